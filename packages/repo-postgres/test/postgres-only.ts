import { describe, expect, it } from 'vitest';
import { LeaseLostError, TaskNotDueError, TaskNotFoundError, poisonTaskError, type Repository, type TaskChangeNotice, type TaskInfo } from '@horae/storage';
import type { RepositoryFixture } from '@horae/storage/testing';
import { PostgresRepository } from '@horae/repo-postgres';
import { PG_URL, rawClient } from './pg-fixture.js';

const MINUTE = 60_000;
const past = (): Date => new Date(Date.now() - 10 * MINUTE);

async function insert(repo: Repository, overrides: Partial<Parameters<Repository['insert']>[0]> = {}): Promise<TaskInfo> {
  return (await repo.insert({ workId: 'work-a', scheduledAt: past(), ...overrides })).task;
}

/** Pages getUpdatedSince to an empty page. */
async function drain(repo: Repository, cursor: string | null): Promise<{ tasks: TaskInfo[]; cursor: string }> {
  const tasks: TaskInfo[] = [];
  let current = cursor;
  for (let i = 0; i < 1_000; i++) {
    const page = await repo.getUpdatedSince(current, 3);
    if (page.tasks.length === 0) return { tasks, cursor: page.cursor };
    tasks.push(...page.tasks);
    current = page.cursor;
  }
  throw new Error('no empty page');
}

/** Resolves with the first notice `match` accepts; rejects after `ms` (a bound, not a sleep). */
function nextNotice(repo: PostgresRepository, match: (notice: TaskChangeNotice) => boolean, ms = 1_000): { ready: Promise<void>; notice: Promise<TaskChangeNotice> } {
  let unsubscribe: (() => Promise<void>) | undefined;
  let resolveNotice!: (notice: TaskChangeNotice) => void;
  let rejectNotice!: (error: Error) => void;
  const notice = new Promise<TaskChangeNotice>((resolve, reject) => {
    resolveNotice = resolve;
    rejectNotice = reject;
  });
  const ready = repo
    .subscribeChanges((n) => {
      if (match(n)) resolveNotice(n);
    })
    .then((off) => {
      unsubscribe = off;
      const timer = setTimeout(() => rejectNotice(new Error(`no notice within ${ms} ms`)), ms);
      void notice.catch(() => undefined).finally(() => {
        clearTimeout(timer);
        void unsubscribe?.();
      });
    });
  return { ready, notice };
}

/** Tests of what only the PostgreSQL adapter has, registered inside the conformance block (so they run one at a time). */
export function postgresOnlyTests(fixture: () => RepositoryFixture): void {
  const repo = (): PostgresRepository => fixture().repository as PostgresRepository;
  const schema = (): string => repo().schema;

  describe('PostgreSQL: the change cursor is exact under concurrent transactions', () => {
    it('never steps over a transaction that commits after later ones', async () => {
      const [a, b] = [await insert(repo()), await insert(repo())];
      const start = await drain(repo(), null);
      expect(start.tasks.map((t) => t.id)).toEqual([a.id, b.id]);

      // A writer holds a transaction open over a change of A (it takes its xid and sequence number first)…
      const held = await rawClient();
      try {
        await held.query('BEGIN');
        await held.query(
          `UPDATE "${schema()}".tasks SET priority = 99, updated_at = now(), change_xid = DEFAULT, change_seq = DEFAULT WHERE id = $1`,
          [a.id],
        );
        // …while other clients commit later changes.
        const peer = await fixture().openPeer();
        await peer.update(b.id, { priority: 5 });
        const c = await insert(peer);
        const raw = await held.query<{ id: string; seq: string }>(`SELECT id, change_seq::text AS seq FROM "${schema()}".tasks WHERE id = ANY($1)`, [[b.id, c.id]]);
        const heldSeq = await held.query<{ seq: string }>(`SELECT change_seq::text AS seq FROM "${schema()}".tasks WHERE id = $1`, [a.id]);
        // The trap: the held change has the smaller sequence number, so a cursor on the sequence alone would step over it.
        for (const row of raw.rows) expect(BigInt(heldSeq.rows[0]!.seq)).toBeLessThan(BigInt(row.seq));

        // The reader pages to the end while A's transaction is open: nothing behind it is handed out. (A reader
        // that waits only briefly for the open transaction, to keep the test fast.)
        const impatient = new PostgresRepository({ connectionString: PG_URL, schema: schema(), horizonWaitMs: 20 });
        const during = await drain(impatient, start.cursor).finally(() => impatient.close());
        expect(during.tasks).toEqual([]);
        expect(during.cursor).toBe(start.cursor);

        await held.query('COMMIT');
        const after = await drain(repo(), during.cursor);
        const byId = new Map(after.tasks.map((t) => [t.id, t]));
        expect(after.tasks.map((t) => t.id)).toEqual([a.id, b.id, c.id]);
        expect(byId.get(a.id)?.priority).toBe(99);
        expect(byId.get(b.id)?.priority).toBe(5);
        expect(await drain(repo(), after.cursor)).toEqual({ tasks: [], cursor: after.cursor });
      } finally {
        await held.query('ROLLBACK').catch(() => undefined);
        await held.end();
      }
    });

    it('a change is readable right after it commits when no other transaction is open', async () => {
      const cursor = await repo().getCursor();
      const task = await insert(repo());
      const page = await repo().getUpdatedSince(cursor, 10);
      expect(page.tasks.map((t) => t.id)).toEqual([task.id]);
      const done = await repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
      await repo().markAsDone(task.id, done!.lease!.token);
      const next = await repo().getUpdatedSince(page.cursor, 10);
      expect(next.tasks).toEqual([await repo().getById(task.id)]);
      expect(next.tasks[0]!.state).toBe('Done');
    });

    it('waits for a short transaction that ends while it reads', async () => {
      const first = await insert(repo());
      const { cursor } = await drain(repo(), null);
      const held = await rawClient();
      try {
        await held.query('BEGIN');
        await held.query(`UPDATE "${schema()}".tasks SET priority = 7, change_xid = DEFAULT, change_seq = DEFAULT WHERE id = $1`, [first.id]);
        const later = await insert(repo());
        const reading = repo().getUpdatedSince(cursor, 10);
        await held.query('COMMIT');
        const page = await reading;
        expect(page.tasks.map((t) => t.id)).toEqual([first.id, later.id]);
      } finally {
        await held.end();
      }
    });

    it('getCursor does not step over a transaction open when it is taken', async () => {
      const task = await insert(repo());
      const held = await rawClient();
      try {
        await held.query('BEGIN');
        await held.query(`UPDATE "${schema()}".tasks SET priority = 3, change_xid = DEFAULT, change_seq = DEFAULT WHERE id = $1`, [task.id]);
        const cursor = await repo().getCursor();
        await held.query('COMMIT');
        const seen = await drain(repo(), cursor);
        expect(seen.tasks.map((t) => t.id)).toContain(task.id);
        expect(seen.tasks.find((t) => t.id === task.id)?.priority).toBe(3);
      } finally {
        await held.end();
      }
    });

    it('refuses a cursor it did not make', async () => {
      await expect(repo().getUpdatedSince('not-a-cursor', 10)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    });
  });

  describe('PostgreSQL: LISTEN/NOTIFY change notices', () => {
    it('a subscriber on another client hears an insert within a second', async () => {
      const peer = (await fixture().openPeer()) as PostgresRepository;
      const { ready, notice } = nextNotice(peer, (n) => n.reason === 'inserted');
      await ready;
      const task = await insert(repo());
      expect(await notice).toEqual({ taskId: task.id, reason: 'inserted' });
    });

    it('updates, releases and cancels are heard with their reason; claims and done are not sent', async () => {
      const peer = (await fixture().openPeer()) as PostgresRepository;
      const heard: TaskChangeNotice[] = [];
      const task = await insert(repo(), { maxAttempts: 3 });
      let resolveLast!: () => void;
      const last = new Promise<void>((resolve) => (resolveLast = resolve));
      const off = await peer.subscribeChanges((n) => {
        heard.push(n);
        if (n.reason === 'cancelled') resolveLast();
      });
      try {
        await repo().update(task.id, { priority: 2 });
        const claimed = await repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
        await repo().release(task.id, claimed!.lease!.token, { runAt: new Date() });
        const again = await repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
        await repo().markAsCancelled(task.id, { token: again!.lease!.token });
        await last;
        expect(heard).toEqual([
          { taskId: task.id, reason: 'updated' },
          { taskId: task.id, reason: 'released' },
          { taskId: task.id, reason: 'cancelled' },
        ]);
      } finally {
        await off();
      }
    });

    it('a notice is not sent for a write that rolls back or is refused', async () => {
      const task = await insert(repo());
      const heard: TaskChangeNotice[] = [];
      const off = await repo().subscribeChanges((n) => heard.push(n));
      try {
        await expect(repo().update(task.id, { scheduledAt: new Date(Number.NaN) })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
        await expect(repo().markAsCancelled(task.id, { token: 'nope' })).rejects.toBeInstanceOf(LeaseLostError);
        // A marker write: notices arrive in commit order, so once it is heard nothing earlier is still on its way.
        const { ready, notice } = nextNotice(repo(), (n) => n.reason === 'inserted');
        await ready;
        const marker = await insert(repo());
        await notice;
        expect(heard).toEqual([{ taskId: marker.id, reason: 'inserted' }]);
      } finally {
        await off();
      }
    });

    it('the listener reconnects after its connection is killed', async () => {
      const peer = (await fixture().openPeer()) as PostgresRepository;
      const waiting = new Map<string, () => void>();
      const off = await peer.subscribeChanges((n) => waiting.get(n.taskId)?.());
      const heard = async (id: string, ms: number): Promise<boolean> =>
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), ms);
          waiting.set(id, () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
      const admin = await rawClient();
      try {
        const killed = await admin.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = $1`, [`LISTEN "horae_changes_${schema()}"`]);
        expect(killed.rows.length).toBe(1);
        // Notices are hints: those sent while the listener is down are lost. Write until one is heard again
        // (the backoff starts at 100 ms, so this takes a few rounds, each bounded by 200 ms).
        let again = false;
        for (let i = 0; i < 50 && !again; i++) {
          const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
          const hearing = heard(id, 200);
          await insert(repo(), { id });
          again = await hearing;
        }
        expect(again).toBe(true);
      } finally {
        await off();
        await admin.end();
      }
    });
  });

  describe('PostgreSQL: group commit', () => {
    it('concurrent markAsDone calls each get their own result', async () => {
      const inserted = await repo().insertMany(Array.from({ length: 30 }, () => ({ workId: 'w', scheduledAt: past() })));
      const ahead = await repo().claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 30 });
      expect(ahead).toHaveLength(30);
      const claimed = await Promise.all(ahead.map((task) => repo().markAsStarted(task.id, task.lease!.token)));
      const calls = claimed.map((task, i) => (i % 3 === 0 ? repo().markAsDone(task.id, 'wrong-token') : repo().markAsDone(task.id, task.lease!.token)));
      calls.push(repo().markAsDone('00000000-0000-0000-0000-000000000000', 'x'));
      // The same task twice in one tick: exactly one of the two lands.
      calls.push(repo().markAsDone(claimed[1]!.id, claimed[1]!.lease!.token));
      const results = await Promise.allSettled(calls);
      for (let i = 0; i < 30; i++) {
        const result = results[i]!;
        if (i % 3 === 0) expect(result.status === 'rejected' && result.reason instanceof LeaseLostError).toBe(true);
        else if (i !== 1) expect(result.status === 'fulfilled' && result.value.state === 'Done').toBe(true);
      }
      expect(results[30]!.status === 'rejected' && (results[30] as PromiseRejectedResult).reason instanceof TaskNotFoundError).toBe(true);
      const twice = [results[1]!, results[31]!];
      expect(twice.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(twice.filter((r) => r.status === 'rejected' && r.reason instanceof LeaseLostError)).toHaveLength(1);
      expect(await repo().countByState()).toMatchObject({ Done: 20, Working: 10 });
      expect(inserted).toHaveLength(30);
    });

    it('concurrent claimDue calls in one tick share the due tasks without overlap, in priority order', async () => {
      await repo().insertMany(Array.from({ length: 20 }, (_, i) => ({ workId: 'w', scheduledAt: past(), priority: i })));
      const results = await Promise.all(Array.from({ length: 16 }, () => repo().claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 1 })));
      const ids = results.flat().map((t) => t.id);
      expect(ids).toHaveLength(16);
      expect(new Set(ids).size).toBe(16);
      for (const result of results) expect(result.length).toBe(1);
      expect(results.map((r) => r[0]!.priority)).toEqual(Array.from({ length: 16 }, (_, i) => 19 - i));
    });
  });

  describe('PostgreSQL: poison tasks', () => {
    it("a poison task's error is the contract's poisonTaskError(n), n the unstarted claims in a row, also past a lowered limit", async () => {
      const task = await insert(repo(), { maxAttempts: 3, workId: 'poison' });
      const claimAhead = async (): Promise<void> => {
        expect((await repo().claimDue({ owner: 'node-a', leaseMs: 0, limit: 1, workIds: ['poison'] })).map((t) => t.id)).toEqual([task.id]);
      };
      for (const expected of [1, 2]) {
        await claimAhead();
        expect(await repo().reclaimExpired({ maxUnstartedClaims: 5 })).toMatchObject([{ id: task.id, state: 'Initialized', unstartedClaims: expected, lastError: null }]);
      }
      await claimAhead();
      // The limit lowered below what the task has already reached: it fails now, and says how many claims it took.
      const [poisoned] = await repo().reclaimExpired({ maxUnstartedClaims: 2 });
      expect(poisoned).toMatchObject({ id: task.id, state: 'Failed', unstartedClaims: 3, attempt: 0, claims: 3 });
      expect(poisoned!.lastError).toEqual(poisonTaskError(3));
      expect(await repo().getById(task.id)).toEqual(poisoned);
    });
  });

  describe('PostgreSQL: storage details', () => {
    it('a param with \\u0000 and duplicate-looking keys round-trips (json, not jsonb)', async () => {
      const param = { nul: 'a\u0000b', z: 1, a: 2, nested: { '\u0000': ['\u0000'] } };
      const task = await insert(repo(), { param });
      expect(task.param).toEqual(param);
      expect(Object.keys((await repo().getById(task.id)).param as object)).toEqual(['nul', 'z', 'a', 'nested']);
    });

    it('times read back to the millisecond, inside and outside the window read as a double (1900 to 2040)', async () => {
      // Times come back as epoch milliseconds: a double between 1900 and 2040, the exact numeric form outside.
      const times = [
        '0001-01-01T00:00:00.000Z',
        '1000-06-15T12:34:56.789Z',
        '1899-12-31T23:59:59.999Z',
        '1900-01-01T00:00:00.000Z',
        '1970-01-01T00:00:00.001Z',
        '2039-12-31T23:59:59.999Z',
        '2040-01-01T00:00:00.000Z',
        '2110-01-01T00:00:00.999Z',
        '4149-12-31T23:56:45.611Z', // a double would read 45.610
        '9999-12-31T23:59:59.999Z',
        '+275760-09-13T00:00:00.000Z',
      ].map((iso) => new Date(iso));
      for (const at of times) {
        const task = await insert(repo(), { scheduledAt: at });
        expect(task.scheduledAt.toISOString(), at.toISOString()).toBe(at.toISOString());
        expect((await repo().getById(task.id)).scheduledAt.getTime(), at.toISOString()).toBe(at.getTime());
        // ifScheduledAt compares with the stored time, so the grouped claim finds it equal: a time to come is then
        // refused as not due (a differing time would give null instead).
        if (at.getTime() > Date.now()) {
          await expect(repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: at }), at.toISOString()).rejects.toBeInstanceOf(TaskNotDueError);
          continue;
        }
        const claimed = await repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: at });
        expect(claimed?.scheduledAt.getTime(), at.toISOString()).toBe(at.getTime());
        expect((await repo().markAsDone(task.id, claimed!.lease!.token)).scheduledAt.getTime(), at.toISOString()).toBe(at.getTime());
      }
    });

    it('lease.until is the database clock at the claim plus leaseMs', async () => {
      const task = await insert(repo());
      const claimed = await repo().claim(task.id, { owner: 'node-a', leaseMs: 12_345 });
      expect(claimed!.lease!.until.getTime() - claimed!.updatedAt.getTime()).toBe(12_345);
    });

    it('a new claim starts with no progress', async () => {
      const task = await insert(repo(), { maxAttempts: 3 });
      const first = await repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
      await repo().setProgress(task.id, first!.lease!.token, { completed: 1, total: 2 });
      await repo().release(task.id, first!.lease!.token, { runAt: past() });
      expect((await repo().getById(task.id)).progress).toMatchObject({ completed: 1, total: 2 });
      // A claim ahead clears it too: what a task reports is its current claim's run.
      const [second] = await repo().claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 1 });
      expect(second).toMatchObject({ id: task.id, progress: null, attempt: 1, claims: 2 });
    });

    it('insertMany beyond one statement (5,000 rows) is one transaction: a taken id at the end writes nothing', async () => {
      const taken = await insert(repo());
      const many = Array.from({ length: 5_001 }, (_, i) => ({ workId: 'w', scheduledAt: past(), param: { i } }));
      await expect(repo().insertMany([...many, { workId: 'w', scheduledAt: past(), id: taken.id }])).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(await repo().countByState()).toMatchObject({ Initialized: 1 });
      const results = await repo().insertMany(many);
      expect(results).toHaveLength(5_001);
      expect(results.every((r, i) => r.created && (r.task.param as { i: number }).i === i)).toBe(true);
      expect((await repo().countByState()).Initialized).toBe(5_002);
    });

    it('a string PostgreSQL cannot hold is refused as InvalidInputError, nothing written', async () => {
      await expect(repo().insert({ workId: 'nul\u0000work', scheduledAt: past() })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect((await repo().list()).tasks).toEqual([]);
    });
  });
}
