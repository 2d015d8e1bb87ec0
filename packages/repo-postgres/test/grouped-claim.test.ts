import pg from 'pg';
import { PostgresRepository } from '@horae/repo-postgres';
import { TaskNotDueError, TaskNotFoundError, type Repository, type TaskInfo } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { PG_URL, createPgFixture, dropSchema, rawClient, testSchema } from './pg-fixture.js';

type Fixture = Awaited<ReturnType<typeof createPgFixture>>;

const MINUTE = 60_000;

let fixture: Fixture | undefined;
afterEach(async () => {
  await fixture?.dispose();
  fixture = undefined;
});

describe('PostgresRepository: claims made in one tick share one statement', () => {
  it('each caller gets its own answer: the task, null when not claimable or due at another time, TaskNotFoundError when missing', async () => {
    fixture = await createPgFixture();
    const repo = fixture.repository;
    const past = new Date(Date.now() - MINUTE);
    const other = new Date(Date.now() - 2 * MINUTE);
    const [a, b, c, d] = (await repo.insertMany(Array.from({ length: 4 }, (_, i) => ({ workId: 'w', scheduledAt: past, param: { i } })))).map((r) => r.task);
    await repo.claim(c!.id, { owner: 'earlier', leaseMs: MINUTE });

    const [gotA, gotB, gotC, gotD, missing] = await Promise.allSettled([
      repo.claim(a!.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: past }),
      repo.claim(b!.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: other }),
      repo.claim(c!.id, { owner: 'node-a', leaseMs: MINUTE }),
      repo.claim(d!.id, { owner: 'node-a', leaseMs: MINUTE }),
      repo.claim('no-such-task', { owner: 'node-a', leaseMs: MINUTE }),
    ]);

    const claimedA = (gotA as PromiseFulfilledResult<TaskInfo | null>).value;
    expect(claimedA).toMatchObject({ id: a!.id, state: 'Working', attempt: 1, param: { i: 0 }, lease: { owner: 'node-a' } });
    expect(gotB).toEqual({ status: 'fulfilled', value: null });
    expect(gotC).toEqual({ status: 'fulfilled', value: null });
    expect((gotD as PromiseFulfilledResult<TaskInfo | null>).value).toMatchObject({ id: d!.id, state: 'Working' });
    expect(missing.status).toBe('rejected');
    expect((missing as PromiseRejectedResult).reason).toBeInstanceOf(TaskNotFoundError);

    // The losers are untouched; each winner's claim opened its running attempt in the same statement.
    expect(await repo.getById(b!.id)).toMatchObject({ state: 'Initialized', attempt: 0 });
    expect((await repo.getById(c!.id)).lease?.owner).toBe('earlier');
    expect(await repo.listAttempts(a!.id)).toMatchObject([{ run: 1, attempt: 1, node: 'node-a', outcome: 'running' }]);
    expect(await repo.listAttempts(b!.id)).toEqual([]);
    expect(await repo.markAsDone(a!.id, claimedA!.lease!.token)).toMatchObject({ state: 'Done' });
  });

  it('a claim of a task not due by the database clock, grouped or not, is refused as not due for its caller alone', async () => {
    for (const groupCommit of [true, false]) {
      fixture = await createPgFixture({ groupCommit });
      const repo = fixture.repository;
      const past = new Date(Date.now() - MINUTE);
      const [due, later, done] = (await repo.insertMany([{ workId: 'w', scheduledAt: past }, { workId: 'w', scheduledAt: past }, { workId: 'w', scheduledAt: past }])).map((r) => r.task);
      // Due in 90 s by the database's own clock (the row written by hand, so no node clock is involved).
      const admin = await rawClient();
      try {
        await admin.query(`UPDATE "${fixture.schema}".tasks SET scheduled_at = date_trunc('milliseconds', statement_timestamp()) + interval '90 seconds' WHERE id = $1`, [later!.id]);
      } finally {
        await admin.end();
      }
      const stored = await repo.getById(later!.id);
      await repo.markAsCancelled(done!.id);
      const [gotDue, gotLater, gotLaterElsewhen, gotDone] = await Promise.allSettled([
        repo.claim(due!.id, { owner: 'node-a', leaseMs: MINUTE }),
        repo.claim(later!.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: stored.scheduledAt }),
        repo.claim(later!.id, { owner: 'node-b', leaseMs: MINUTE, ifScheduledAt: past }),
        repo.claim(done!.id, { owner: 'node-a', leaseMs: MINUTE }),
      ]);
      expect((gotDue as PromiseFulfilledResult<TaskInfo | null>).value, `groupCommit ${groupCommit}`).toMatchObject({ id: due!.id, state: 'Working', attempt: 1 });
      const refusal = (gotLater as PromiseRejectedResult).reason as TaskNotDueError;
      expect(refusal, `groupCommit ${groupCommit}`).toBeInstanceOf(TaskNotDueError);
      expect(refusal.dueInMs).toBeGreaterThan(80_000);
      expect(refusal.dueInMs).toBeLessThanOrEqual(90_000);
      // Due at another time, or not Initialized: null, checked before the due time.
      expect(gotLaterElsewhen).toEqual({ status: 'fulfilled', value: null });
      expect(gotDone).toEqual({ status: 'fulfilled', value: null });
      expect(await repo.getById(later!.id)).toEqual(stored);
      expect(await repo.listAttempts(later!.id)).toEqual([]);
      await fixture.dispose();
      fixture = undefined;
    }
  });

  it('claims of one tick cost one statement, and two claims of one id in one tick still have exactly one winner', async () => {
    const schema = testSchema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
    const sent: string[] = [];
    // A pool of ours that records every statement the repository sends through it.
    const counting = {
      query: (config: { text: string }) => {
        sent.push(config.text);
        return pool.query(config);
      },
      connect: () => pool.connect(),
      end: () => pool.end(),
    };
    const repo = new PostgresRepository({ pool: counting, schema });
    try {
      const past = new Date(Date.now() - MINUTE);
      const tasks = (await repo.insertMany(Array.from({ length: 20 }, (_, i) => ({ workId: 'w', scheduledAt: past, param: { i } })))).map((r) => r.task);
      sent.length = 0;
      const results = await Promise.all([
        ...tasks.map((task) => repo.claim(task.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: past })),
        repo.claim(tasks[0]!.id, { owner: 'node-a', leaseMs: MINUTE }),
      ]);
      expect(results.filter((r) => r !== null)).toHaveLength(20);
      expect(results.filter((r) => r?.id === tasks[0]!.id)).toHaveLength(1);
      expect(new Set(results.map((r) => r?.lease?.token).filter((t) => t !== undefined)).size).toBe(20);
      // Twenty ids in one statement; the second claim of the first id in a statement of its own.
      expect(sent.filter((text) => text.includes('UPDATE')).length).toBe(2);
      expect(sent).toHaveLength(2);
      expect((await repo.countByState()).Working).toBe(20);
    } finally {
      await repo.close();
      await pool.end();
      await dropSchema(schema);
    }
  });

  it('three clients claiming the same 60 tasks in opposite orders: each task has exactly one winner, and nobody deadlocks', async () => {
    fixture = await createPgFixture({ poolSize: 2 });
    const clients: Repository[] = [fixture.repository, await fixture.openPeer(), await fixture.openPeer()];
    const past = new Date(Date.now() - MINUTE);
    const ids = (await clients[0]!.insertMany(Array.from({ length: 60 }, (_, i) => ({ workId: 'w', scheduledAt: past, param: { i } })))).map((r) => r.task.id);
    const orders = [ids, [...ids].reverse(), [...ids.slice(30), ...ids.slice(0, 30)]];
    const started = Date.now();
    const results = await Promise.all(clients.map((client, n) => Promise.all(orders[n]!.map((id) => client.claim(id, { owner: `node-${n}`, leaseMs: MINUTE, ifScheduledAt: past })))));
    // A deadlock would cost PostgreSQL's deadlock_timeout (1 s by default) before one side is aborted and retried.
    expect(Date.now() - started).toBeLessThan(1_000);
    const winners = new Map<string, number>();
    for (const perClient of results) for (const task of perClient) if (task !== null) winners.set(task.id, (winners.get(task.id) ?? 0) + 1);
    expect(winners.size).toBe(60);
    expect([...winners.values()].every((n) => n === 1)).toBe(true);
    for (const id of ids.slice(0, 5)) expect(await clients[0]!.listAttempts(id)).toHaveLength(1);
  });
});
