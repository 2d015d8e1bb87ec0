import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { InvalidStateError, LeaseLostError, TaskNotFoundError, type TaskInfo } from '@horae/storage';
import { PostgresRepository, type PgPool, type PgQueryConfig, type PgQueryResult } from '@horae/repo-postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { PG_URL, dropSchema, testSchema } from './pg-fixture.js';

const MINUTE = 60_000;

/** A statement the repository sent: its SQL and values. */
interface Sent {
  text: string;
  values: unknown[];
}

/**
 * A repository on a pool of ours that records every statement it sends, and can hold a statement back: `hold(match)`
 * makes the next statement whose text `match` accepts wait until the returned release is called.
 */
function openRecorded(options: { groupCommit?: boolean } = {}): {
  repo: PostgresRepository;
  sent: Sent[];
  hold(match: (text: string) => boolean): { release(): void; reached: Promise<void> };
  dispose(): Promise<void>;
} {
  const schema = testSchema();
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  const sent: Sent[] = [];
  const holds: { match: (text: string) => boolean; gate: Promise<void>; reached: () => void }[] = [];
  const recording: PgPool = {
    query: async (config: PgQueryConfig): Promise<PgQueryResult> => {
      sent.push({ text: config.text, values: config.values ?? [] });
      const i = holds.findIndex((h) => h.match(config.text));
      if (i >= 0) {
        const [held] = holds.splice(i, 1);
        held!.reached();
        await held!.gate;
      }
      return pool.query(config);
    },
    connect: () => pool.connect(),
    end: () => pool.end(),
  };
  const repo = new PostgresRepository({ pool: recording, schema, ...options });
  return {
    repo,
    sent,
    hold(match) {
      let release!: () => void;
      let reached!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
      holds.push({ match, gate, reached });
      return { release, reached: reachedPromise };
    },
    dispose: async () => {
      await repo.close();
      await pool.end();
      await dropSchema(schema);
    },
  };
}

/** Inserts `n` due tasks and claims them all ahead. */
async function claimedAhead(repo: PostgresRepository, n: number): Promise<(TaskInfo & { lease: NonNullable<TaskInfo['lease']> })[]> {
  await repo.insertMany(Array.from({ length: n }, (_, i) => ({ workId: 'w', scheduledAt: new Date(Date.now() - MINUTE), maxAttempts: 3, param: { i } })));
  const claimed = await repo.claimDue({ owner: 'node-a', leaseMs: 10 * MINUTE, limit: n });
  expect(claimed).toHaveLength(n);
  return claimed as (TaskInfo & { lease: NonNullable<TaskInfo['lease']> })[];
}

/** The statements of `sent` that update tasks through `unnest`: the grouped writes. */
const grouped = (sent: readonly Sent[], what: string): Sent[] => sent.filter((s) => s.text.includes('FROM unnest($1::text[], $2::text[]') && s.text.includes(what));
const STARTS = 'unstarted_claims = 0';
const DONES = `state = 'Done'`;
const FAILS = `state = 'Failed'`;
/** The one read that tells refused rows apart. */
const reads = (sent: readonly Sent[]): Sent[] => sent.filter((s) => /^SELECT .* WHERE id = ANY\(\$1::text\[\]\)$/s.test(s.text.trim()));

let opened: ReturnType<typeof openRecorded> | undefined;
afterEach(async () => {
  await opened?.dispose();
  opened = undefined;
});

describe('PostgresRepository: the starts and ends of runs are grouped', () => {
  it('markAsStarted calls of one tick are one statement, each fenced on its own; the refused ones cost one read in all', async () => {
    opened = openRecorded();
    const { repo, sent } = opened;
    const tasks = await claimedAhead(repo, 20);
    const early = await repo.markAsStarted(tasks[0]!.id, tasks[0]!.lease.token);
    sent.length = 0;
    const calls = [
      ...tasks.map((task, i) => repo.markAsStarted(task.id, i === 7 ? randomUUID() : task.lease.token)),
      repo.markAsStarted(randomUUID(), tasks[3]!.lease.token),
    ];
    const results = await Promise.allSettled(calls);
    expect(grouped(sent, STARTS)).toHaveLength(1);
    expect(grouped(sent, STARTS)[0]!.values[0]).toHaveLength(21);
    expect(reads(sent)).toHaveLength(1);
    expect(sent).toHaveLength(2);
    // Started already: returned unchanged. A wrong token: LeaseLostError. An unknown id: TaskNotFoundError.
    expect(results[0]).toEqual({ status: 'fulfilled', value: early });
    expect(results[7]?.status === 'rejected' && results[7].reason instanceof LeaseLostError).toBe(true);
    expect(results[20]?.status === 'rejected' && results[20].reason instanceof TaskNotFoundError).toBe(true);
    for (const [i, result] of results.slice(1, 20).entries()) {
      if (i + 1 === 7) continue;
      expect(result.status === 'fulfilled' && result.value).toMatchObject({ state: 'Working', attempt: 1, claims: 1, lease: { started: true } });
    }
    // Each started run has its record, and only those.
    expect(await repo.listAttempts(tasks[7]!.id)).toEqual([]);
    expect(await repo.listAttempts(tasks[8]!.id)).toMatchObject([{ run: 1, attempt: 1, node: 'node-a', outcome: 'running' }]);
  });

  it('calls made while a statement of their kind is in flight wait for it, then go together in one statement', async () => {
    opened = openRecorded();
    const { repo, sent, hold } = opened;
    const tasks = await claimedAhead(repo, 12);
    await Promise.all(tasks.map((task) => repo.markAsStarted(task.id, task.lease.token)));
    sent.length = 0;
    const first = hold((text) => text.includes(DONES));
    const firstDone = repo.markAsDone(tasks[0]!.id, tasks[0]!.lease.token);
    await first.reached;
    // Eleven more, each in a tick of its own, while the first Done is held in flight.
    const later: Promise<TaskInfo>[] = [];
    try {
      for (const task of tasks.slice(1)) {
        later.push(repo.markAsDone(task.id, task.lease.token));
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      expect(grouped(sent, DONES)).toHaveLength(1);
    } finally {
      first.release();
    }
    const done = await Promise.all([firstDone, ...later]);
    expect(done.map((task) => task.state)).toEqual(Array.from({ length: 12 }, () => 'Done'));
    const statements = grouped(sent, DONES);
    expect(statements.map((s) => (s.values[0] as string[]).length)).toEqual([1, 11]);
    expect(await repo.countByState()).toMatchObject({ Done: 12, Working: 0 });
  });

  it('grouped markAsFailed calls store each their own error, close each record failed with it, and refuse an unstarted claim alone', async () => {
    opened = openRecorded();
    const { repo, sent } = opened;
    const tasks = await claimedAhead(repo, 6);
    const unstarted = tasks[5]!;
    await Promise.all(tasks.slice(0, 5).map((task) => repo.markAsStarted(task.id, task.lease.token)));
    sent.length = 0;
    const results = await Promise.allSettled(tasks.map((task, i) => repo.markAsFailed(task.id, { message: `boom ${i}`, code: `E${i}` }, task.lease.token)));
    expect(grouped(sent, FAILS)).toHaveLength(1);
    expect(reads(sent)).toHaveLength(1);
    for (const [i, task] of tasks.slice(0, 5).entries()) {
      expect(results[i]?.status === 'fulfilled' && results[i].value).toMatchObject({ state: 'Failed', lastError: { message: `boom ${i}`, code: `E${i}` } });
      expect(await repo.listAttempts(task.id)).toMatchObject([{ outcome: 'failed', error: { message: `boom ${i}`, code: `E${i}` } }]);
    }
    expect(results[5]?.status === 'rejected' && results[5].reason instanceof InvalidStateError).toBe(true);
    expect(await repo.getById(unstarted.id)).toEqual(unstarted);
  });

  it('without group commit each call is its own statement, refused ones told apart the same way', async () => {
    opened = openRecorded({ groupCommit: false });
    const { repo, sent } = opened;
    const [a, b, c] = await claimedAhead(repo, 3);
    sent.length = 0;
    const started = await repo.markAsStarted(a!.id, a!.lease.token);
    expect(started).toMatchObject({ attempt: 1, lease: { started: true } });
    expect(sent).toHaveLength(1);
    expect(await repo.markAsStarted(a!.id, a!.lease.token)).toEqual(started);
    await expect(repo.markAsStarted(b!.id, randomUUID())).rejects.toBeInstanceOf(LeaseLostError);
    await expect(repo.markAsDone(b!.id, b!.lease.token)).rejects.toBeInstanceOf(InvalidStateError);
    await expect(repo.markAsFailed(c!.id, { message: 'x' }, c!.lease.token)).rejects.toBeInstanceOf(InvalidStateError);
    await expect(repo.markAsDone(randomUUID(), 'x')).rejects.toBeInstanceOf(TaskNotFoundError);
    expect((await repo.markAsDone(a!.id, a!.lease.token)).state).toBe('Done');
    expect(grouped(sent, '')).toEqual([]);
  });
});
