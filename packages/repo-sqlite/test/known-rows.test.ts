import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@horae/core/testing';
import { InvalidStateError, LeaseLostError, RepositoryError } from '@horae/storage';
import { SqliteRepository } from '@horae/repo-sqlite';
import { driverSlice } from './driver-slice.js';
import { KnownRows } from '../src/known-rows.js';
import type { TaskRow } from '../src/row-mapping.js';
import { STATEMENT_SQL } from '../src/statements.js';
import { tempDir, type TempDir } from './temp-database.js';

const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

const row = (id: string, param = '{}'): TaskRow => ({
  id,
  work_id: 'w',
  param,
  scheduled_at: T0,
  state: 'Initialized',
  priority: 0,
  attempt: 0,
  max_attempts: 1,
  lease_owner: null,
  lease_until: null,
  lease_token: null,
  last_error: null,
  unique_key: null,
  progress: null,
  created_at: T0,
  updated_at: T0,
  change_seq: 1,
  kind: 'scheduled',
  schedule_name: null,
  runs: 0,
  claims: 0,
  unstarted_claims: 0,
  lease_started: 0,
});


/** A driver slice over `db` that counts the reads of a row before a write (STATEMENT_SQL.rowForWrite). */
function countingRowReads(db: Database.Database): { slice: ReturnType<typeof driverSlice>; readonly count: number } {
  let count = 0;
  const slice = driverSlice(db, (source, statement) => {
    const reads = source === STATEMENT_SQL.rowForWrite;
    return {
      run: (...params) => statement.run(...params),
      get: (...params) => {
        if (reads) count++;
        return statement.get(...params);
      },
      all: (...params) => statement.all(...params),
    };
  });
  return {
    slice,
    get count() {
      return count;
    },
  };
}

describe('KnownRows', () => {
  it('keeps at most maxRows rows, forgetting the oldest first, down to 90%', () => {
    const known = new KnownRows(10, 1_000_000);
    for (let i = 0; i < 10; i++) known.remember(row(`t${i}`));
    expect(known.size).toBe(10);
    known.remember(row('t10'));
    expect(known.size).toBe(9);
    expect(known.take('t0')).toBeUndefined();
    expect(known.take('t1')).toBeUndefined();
    expect(known.take('t2')?.id).toBe('t2');
    expect(known.take('t2')).toBeUndefined();
    expect(known.take('t10')?.id).toBe('t10');
  });

  it('keeps at most maxWeight characters of row text, and never a row heavier than that alone', () => {
    const known = new KnownRows(100, 1_000);
    known.remember(row('big', `"${'x'.repeat(2_000)}"`));
    expect(known.size).toBe(0);
    // 556 characters each: two weigh more than 1,000, so the older goes.
    known.remember(row('a', `"${'x'.repeat(300)}"`));
    known.remember(row('b', `"${'x'.repeat(300)}"`));
    expect(known.size).toBe(1);
    expect(known.take('a')).toBeUndefined();
    expect(known.take('b')?.id).toBe('b');
  });

  it('remember replaces the row of a task already remembered, and forget drops it', () => {
    const known = new KnownRows(10, 1_000_000);
    known.remember(row('b'));
    known.remember({ ...row('b'), change_seq: 7 });
    expect(known.size).toBe(1);
    known.remember(row('c'));
    known.forget('c');
    expect(known.take('c')).toBeUndefined();
    expect(known.take('b')?.change_seq).toBe(7);
  });
});

// A repository remembers the rows it claimed (or renewed), so that their markAsDone writes without reading the row. The
// remembered row is only used while the stored change_seq is the same: these tests change rows on another connection
// behind its back.
describe('transitions of remembered rows', () => {
  let dir: TempDir;
  let clock: VirtualClock;
  let a: SqliteRepository;
  let b: SqliteRepository;
  beforeEach(() => {
    dir = tempDir();
    clock = new VirtualClock({ now: T0 });
    a = new SqliteRepository({ database: dir.file(), clock, checkpoint: 'inline' });
    b = new SqliteRepository({ database: dir.file(), clock, checkpoint: 'inline' });
  });
  afterEach(async () => {
    await a.close();
    await b.close();
    dir.remove();
  });

  it('a markAsDone after a claim on one connection reads no row: the claimed row is remembered', async () => {
    const db = new Database(':memory:');
    const reads = countingRowReads(db);
    const repository = new SqliteRepository({ database: reads.slice, clock });
    try {
      const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0), param: { a: 1 } });
      const claimed = await repository.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
      expect(reads.count).toBe(1);
      const done = await repository.markAsDone(task.id, claimed!.lease!.token);
      expect(reads.count).toBe(1);
      expect(done).toEqual(await repository.getById(task.id));
      // Nothing remembered any more: a second markAsDone reads the row, and is refused.
      await expect(repository.markAsDone(task.id, claimed!.lease!.token)).rejects.toBeInstanceOf(LeaseLostError);
      expect(reads.count).toBe(2);
    } finally {
      await repository.close();
      db.close();
    }
  });

  it('a claim ahead, its markAsStarted and its markAsDone on one connection read no row', async () => {
    const db = new Database(':memory:');
    const reads = countingRowReads(db);
    const repository = new SqliteRepository({ database: reads.slice, clock });
    try {
      await repository.insertMany(Array.from({ length: 3 }, (_, i) => ({ workId: 'w', scheduledAt: new Date(T0), param: { i } })));
      const claimed = await repository.claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 3 });
      // An unstarted claim is remembered too, but markAsDone may not use it: the run has not started.
      await expect(repository.markAsDone(claimed[0]!.id, claimed[0]!.lease!.token)).rejects.toBeInstanceOf(InvalidStateError);
      expect(reads.count).toBe(1);
      for (const task of claimed) {
        const started = await repository.markAsStarted(task.id, task.lease!.token);
        expect(started).toEqual(await repository.getById(task.id));
        const done = await repository.markAsDone(task.id, task.lease!.token);
        expect(done).toEqual(await repository.getById(task.id));
      }
      expect(reads.count, 'no read after the refused markAsDone').toBe(1);
      expect((await repository.listAttempts(claimed[1]!.id)).map((attempt) => [attempt.run, attempt.outcome])).toEqual([[1, 'succeeded']]);
    } finally {
      await repository.close();
      db.close();
    }
  });

  it('markAsStarted of a claim ahead that another connection reclaimed and claimed again is refused', async () => {
    await a.insert({ id: 'x', workId: 'w', scheduledAt: new Date(T0) });
    const [first] = await a.claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 1 });
    clock.jump(MINUTE);
    expect(await b.reclaimExpired()).toMatchObject([{ id: 'x', state: 'Initialized', unstartedClaims: 1, attempt: 0 }]);
    const [second] = await b.claimDue({ owner: 'node-b', leaseMs: MINUTE, limit: 1 });
    await expect(a.markAsStarted('x', first!.lease!.token)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await a.getById('x')).toEqual(second);
    const started = await b.markAsStarted('x', second!.lease!.token);
    expect(started).toMatchObject({ attempt: 1, claims: 2, unstartedClaims: 0 });
    expect(started).toEqual(await a.getById('x'));
  });

  it('markAsStarted of a remembered claim ahead whose progress another connection set returns the stored row', async () => {
    await a.insert({ id: 'x', workId: 'w', scheduledAt: new Date(T0) });
    const [claimed] = await a.claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 1 });
    await b.setProgress('x', claimed!.lease!.token, { completed: 0, total: 5 });
    clock.jump(1_000);
    const started = await a.markAsStarted('x', claimed!.lease!.token);
    expect(started).toMatchObject({ attempt: 1, progress: { completed: 0, total: 5 }, lease: { started: true } });
    expect(started).toEqual(await b.getById('x'));
    // Started twice (a retried write that had landed): returned unchanged, one record.
    expect(await a.markAsStarted('x', claimed!.lease!.token)).toEqual(started);
    expect(await b.markAsDone('x', claimed!.lease!.token)).toEqual(await a.getById('x'));
    expect((await a.listAttempts('x')).map((attempt) => attempt.outcome)).toEqual(['succeeded']);
  });

  it('markAsDone of a claimed row whose progress another connection set under the same lease returns the stored row', async () => {
    const { task } = await a.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const claimed = await a.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
    await b.setProgress(task.id, claimed!.lease!.token, { completed: 1, total: 2, message: 'half' });
    clock.jump(1_000);
    const done = await a.markAsDone(task.id, claimed!.lease!.token);
    expect(done).toMatchObject({ state: 'Done', progress: { completed: 1, total: 2, message: 'half' } });
    expect(done).toEqual(await b.getById(task.id));
    expect((await a.listAttempts(task.id)).map((attempt) => [attempt.outcome, attempt.checkIns.length])).toEqual([['succeeded', 1]]);
  });

  it('markAsDone of a claimed row that another connection reclaimed and claimed again is refused', async () => {
    const { task } = await a.insert({ workId: 'w', scheduledAt: new Date(T0), maxAttempts: 2 });
    const first = await a.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
    clock.jump(MINUTE);
    await b.reclaimExpired();
    const second = await b.claim(task.id, { owner: 'node-b', leaseMs: MINUTE });
    await expect(a.markAsDone(task.id, first!.lease!.token)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await b.markAsDone(task.id, second!.lease!.token)).toEqual(await a.getById(task.id));
    expect((await a.listAttempts(task.id)).map((attempt) => attempt.outcome)).toEqual(['lease-expired', 'succeeded']);
  });

  it('a transaction that fails as a whole leaves nothing remembered, though its change numbers are handed out again', async () => {
    const { task } = await a.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const claimed = await a.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
    const token = claimed!.lease!.token;
    await b.insert({ id: 'y', workId: 'w', scheduledAt: new Date(T0) });
    // An attempt row in the way of y's first run: the claim's attempt record fails, which ends the whole transaction,
    // the renewal queued with it included.
    const raw = new Database(dir.file());
    raw.prepare(`INSERT INTO horae_task_attempts (task_id, run, attempt, node, started_at, outcome) VALUES ('y', 1, 1, 'n', 0, 'running')`).run();
    raw.close();
    const renewed = a.renewLease(task.id, token, 5 * MINUTE);
    const other = a.claim('y', { owner: 'node-a', leaseMs: MINUTE });
    await expect(renewed).rejects.toBeInstanceOf(RepositoryError);
    await expect(other).rejects.toBeInstanceOf(RepositoryError);
    // A write under the same lease on another connection takes the change number the failed renewal had: only the
    // stored row may come back.
    await b.setProgress(task.id, token, { completed: 1, total: 1 });
    const done = await a.markAsDone(task.id, token);
    expect(done.progress).toMatchObject({ completed: 1, total: 1 });
    expect(done).toEqual(await b.getById(task.id));
  });

  it('a renewed lease keeps markAsDone exact', async () => {
    const { task } = await a.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const claimed = await a.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
    clock.jump(1_000);
    const renewed = await a.renewLease(task.id, claimed!.lease!.token, 5 * MINUTE);
    expect(renewed.lease!.until.getTime()).toBe(T0 + 1_000 + 5 * MINUTE);
    clock.jump(1_000);
    expect(await a.markAsDone(task.id, claimed!.lease!.token)).toEqual(await b.getById(task.id));
  });
});
