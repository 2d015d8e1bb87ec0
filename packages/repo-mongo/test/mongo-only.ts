import { MongoClient } from 'mongodb';
import type { Document } from 'mongodb';
import { afterEach, expect, it } from 'vitest';
import type { Repository } from '@horae/storage';
import { SchemaVersionError, TaskNotDueError } from '@horae/storage';
import type { RepositoryFixture } from '@horae/storage/testing';
import { MAX_ATTEMPTS_KEPT, MongoRepository, SCHEMA_VERSION, TASK_INDEXES, UNIQUE_KEY_INDEX } from '@horae/repo-mongo';
import { ChangeLog } from '../src/change-log.js';
import { MONGODB_URI, databaseOf } from './mongo-fixture.js';

/** A stored document as the raw driver reads it. */
type RawDocument = { _id: string } & Record<string, unknown>;

const PAST = (): Date => new Date(Date.now() - 10 * 60_000);

/** Pages getUpdatedSince until an empty page; returns the ids seen. */
async function drainIds(repo: Repository, cursor: string | null): Promise<{ ids: string[]; cursor: string }> {
  const ids: string[] = [];
  let current = cursor;
  for (let i = 0; i < 1_000; i++) {
    const page = await repo.getUpdatedSince(current, 50);
    if (page.tasks.length === 0) return { ids, cursor: page.cursor };
    ids.push(...page.tasks.map((t) => t.id));
    current = page.cursor;
  }
  throw new Error('no empty page within 1000 pages');
}

/** Tests that only a MongoDB server can answer: stored shapes, indexes, the change log's pending tickets. */
export function mongoOnlyTests(fixture: () => RepositoryFixture): void {
  const clients: MongoClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });
  const database = () => {
    const client = new MongoClient(MONGODB_URI!);
    clients.push(client);
    return client.db(databaseOf.get(fixture().repository));
  };

  it('mongo: a param with $ and . keys is stored as JSON text, never as a document', async () => {
    const param = { $where: 'sleep(1000)', 'a.b': { $gt: '' } };
    const { task } = await fixture().repository.insert({ workId: '$workId', scheduledAt: PAST(), param, uniqueKey: '$uniqueKey' });
    const stored = await database().collection('horae_tasks').findOne({ _id: task.id as never });
    expect(stored?.param).toBe(JSON.stringify(param));
    expect(stored?.workId).toBe('$workId');
    expect(stored?.uniqueKey).toBe('$uniqueKey');
    expect((await fixture().repository.getById(task.id)).param).toEqual(param);
  });

  it('mongo: caller strings that look like field paths or variables are stored literally', async () => {
    const repo = fixture().repository;
    const { task } = await repo.insert({ workId: 'w', scheduledAt: PAST(), maxAttempts: 2 });
    const claimed = await repo.claim(task.id, { owner: '$$NOW', leaseMs: 60_000 });
    expect(claimed?.lease?.owner).toBe('$$NOW');
    const released = await repo.release(task.id, claimed!.lease!.token, { runAt: PAST(), error: { message: '$state', code: '$$ROOT' } });
    expect(released.lastError).toEqual({ message: '$state', code: '$$ROOT' });
    const cancelled = await repo.markAsCancelled(task.id, { reason: '$lease' });
    expect(cancelled.task.lastError?.message).toBe('$lease');
  });

  it('mongo: init creates the partial unique index over live keys', async () => {
    const indexes = (await database().collection('horae_tasks').listIndexes().toArray()) as { name?: string }[];
    const unique = indexes.find((index) => index.name === UNIQUE_KEY_INDEX);
    expect(unique).toMatchObject({ key: { uniqueKey: 1 }, unique: true, partialFilterExpression: { live: true, uniqueKey: { $type: 'string' } } });
  });

  it('mongo: a database set up by a newer schema is refused with SchemaVersionError', async () => {
    await database().collection<{ _id: string; version: number }>('horae_meta').updateOne({ _id: 'schema' }, { $set: { version: 999 } });
    const repo = new MongoRepository({ uri: MONGODB_URI!, dbName: databaseOf.get(fixture().repository)! });
    try {
      await expect(repo.init()).rejects.toBeInstanceOf(SchemaVersionError);
    } finally {
      await repo.close();
    }
  });

  it('mongo: a reader never passes a change number whose write is still in flight', async () => {
    const repo = fixture().repository;
    const { cursor } = await drainIds(repo, null);
    // A writer that took a number and has not written yet (a slow or out-of-order commit).
    const changes = new ChangeLog(database().collection('horae_meta'), 60_000, 120_000);
    const inFlight = await changes.take();
    const later = (await repo.insert({ workId: 'w', scheduledAt: PAST() })).task;
    const blocked = await drainIds(repo, cursor);
    expect(blocked.ids).toEqual([]);
    expect(blocked.cursor).toBe(cursor);
    expect(await repo.getCursor()).toBe(String(inFlight.seq - 1));
    await changes.release(inFlight);
    expect((await drainIds(repo, cursor)).ids).toEqual([later.id]);
  });

  it('mongo: a database at schema version 1 upgrades; its tasks read as kind scheduled, no schedule, an empty history, claims = attempt', async () => {
    const dbName = `${databaseOf.get(fixture().repository)!}_v1`;
    const db = new MongoClient(MONGODB_URI!);
    clients.push(db);
    const v1 = db.db(dbName);
    const old = new Date('2020-01-01T00:00:00.000Z');
    // What version 1 wrote: its indexes, its counter and version, and tasks without kind, schedule, history or claims.
    await v1.collection('horae_tasks').createIndexes(TASK_INDEXES.filter((index) => index.name !== 'horae_claim_aged'));
    await v1.collection<RawDocument>('horae_meta').insertMany([
      { _id: 'schema', version: 1 },
      { _id: 'changes', seq: 3, pending: [] },
    ] as never[]);
    const base = { workId: 'w', param: 'null', scheduledAt: old, priority: 0, maxAttempts: 3, lastError: null, uniqueKey: null, progress: null, createdAt: old, updatedAt: old };
    await v1.collection<RawDocument>('horae_tasks').insertMany([
      { _id: 'waiting', ...base, state: 'Initialized', attempt: 0, lease: null, live: true, seq: 1 },
      { _id: 'running', ...base, state: 'Working', attempt: 1, lease: { owner: 'old-node', until: new Date('2100-01-01T00:00:00.000Z'), token: 'tok' }, live: true, seq: 2 },
      { _id: 'done', ...base, state: 'Done', attempt: 1, lease: null, live: false, seq: 3 },
    ] as never[]);
    const repo = new MongoRepository({ uri: MONGODB_URI!, dbName });
    try {
      await repo.init();
      expect((await v1.collection<RawDocument>('horae_meta').findOne({ _id: 'schema' }))?.version).toBe(SCHEMA_VERSION);
      for (const id of ['waiting', 'running', 'done']) {
        const stored = await v1.collection<RawDocument>('horae_tasks').findOne({ _id: id });
        expect(stored, id).toMatchObject({ kind: 'scheduled', scheduleName: null, attempts: [], updatedAt: old, seq: stored?.seq, unstartedClaims: 0 });
        expect(stored?.claims, id).toBe(stored?.attempt);
        expect(stored?.claimOrder, id).toBe(-old.getTime());
        expect(await repo.getById(id), id).toMatchObject({ kind: 'scheduled', scheduleName: null, unstartedClaims: 0 });
        expect(await repo.listAttempts(id), id).toEqual([]);
      }
      // A lease taken before the upgrade is a started run.
      expect((await repo.getById('running')).lease).toMatchObject({ token: 'tok', started: true });
      expect(await repo.getById('running')).toMatchObject({ attempt: 1, claims: 1 });
      // A run that started before the upgrade ends normally; it has no record to close.
      expect((await repo.markAsDone('running', 'tok')).state).toBe('Done');
      expect(await repo.listAttempts('running')).toEqual([]);
      // The first run after the upgrade is run 1, recorded with the transition.
      const claimed = await repo.claim('waiting', { owner: 'new-node', leaseMs: 60_000 });
      expect(await repo.listAttempts('waiting')).toMatchObject([{ taskId: 'waiting', run: 1, attempt: 1, node: 'new-node', outcome: 'running', endedAt: null }]);
      await repo.markAsDone('waiting', claimed!.lease!.token);
      expect(await repo.listAttempts('waiting')).toMatchObject([{ run: 1, outcome: 'succeeded' }]);
      // Opening it again migrates nothing: the history written since is intact.
      const again = new MongoRepository({ uri: MONGODB_URI!, dbName });
      try {
        await again.init();
        expect(await again.listAttempts('waiting')).toMatchObject([{ run: 1, outcome: 'succeeded' }]);
        expect((await v1.collection<RawDocument>('horae_meta').findOne({ _id: 'schema' }))?.version).toBe(SCHEMA_VERSION);
      } finally {
        await again.close();
      }
    } finally {
      await repo.close();
      await v1.dropDatabase();
    }
  });

  it('mongo: every write stores the aged claim key priority × 10000 − scheduledAt, and claimDue walks its index', async () => {
    const repo = fixture().repository;
    const at = new Date(Date.now() - 60_000);
    const { task } = await repo.insert({ workId: 'w', scheduledAt: at, priority: 2 });
    const tasks = database().collection<RawDocument>('horae_tasks');
    expect(Number((await tasks.findOne({ _id: task.id }))?.claimOrder)).toBe(2 * 10_000 - at.getTime());
    const later = new Date(at.getTime() + 5_000);
    await repo.update(task.id, { priority: -1, scheduledAt: later });
    expect(Number((await tasks.findOne({ _id: task.id }))?.claimOrder)).toBe(-10_000 - later.getTime());
    const plan = await tasks
      .find({ state: 'Initialized', $expr: { $lte: ['$scheduledAt', '$$NOW'] } })
      .sort({ claimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 })
      .explain('queryPlanner');
    expect(JSON.stringify((plan.queryPlanner as Document | undefined)?.winningPlan)).toContain('horae_claim_aged');
  });

  it('mongo: a claim by id of a task due in the future by the server clock is refused with its dueInMs, and writes nothing', async () => {
    const repo = fixture().repository;
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(Date.now() + 60_000) });
    const before = await database().collection<RawDocument>('horae_tasks').findOne({ _id: task.id });
    const error: unknown = await repo.claim(task.id, { owner: 'n', leaseMs: 1_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskNotDueError);
    expect((error as TaskNotDueError).dueInMs).toBeGreaterThan(50_000);
    expect((error as TaskNotDueError).dueInMs).toBeLessThanOrEqual(60_000 + 5_000);
    expect(await database().collection<RawDocument>('horae_tasks').findOne({ _id: task.id })).toEqual(before);
  });

  it('mongo: a claim ahead stores an unstarted lease and no record; markAsStarted opens the record with the lease owner', async () => {
    const repo = fixture().repository;
    const { task } = await repo.insert({ workId: 'w', scheduledAt: PAST() });
    const [claimed] = await repo.claimDue({ owner: '$owner', leaseMs: 60_000, limit: 1 });
    const tasks = database().collection<RawDocument>('horae_tasks');
    expect(await tasks.findOne({ _id: task.id })).toMatchObject({ state: 'Working', attempt: 0, claims: 1, unstartedClaims: 0, lease: { owner: '$owner', started: false }, attempts: [] });
    const started = await repo.markAsStarted(task.id, claimed!.lease!.token);
    expect(started).toMatchObject({ attempt: 1, claims: 1, lease: { owner: '$owner', token: claimed!.lease!.token, started: true } });
    expect(started.lease?.until).toEqual(claimed!.lease!.until);
    expect((await tasks.findOne({ _id: task.id }))?.attempts).toMatchObject([{ run: 1, attempt: 1, node: '$owner', outcome: 'running' }]);
  });

  it('mongo: the history is embedded in the task document, beside the kind and schedule name', async () => {
    const repo = fixture().repository;
    const { task } = await repo.insert({ workId: 'w', scheduledAt: PAST(), scheduleName: 'nightly' });
    const claimed = await repo.claim(task.id, { owner: 'n', leaseMs: 60_000 });
    await repo.setProgress(task.id, claimed!.lease!.token, { completed: 1, total: 2, message: '$$ROOT' });
    const stored = await database().collection<RawDocument>('horae_tasks').findOne({ _id: task.id });
    expect(stored).toMatchObject({ kind: 'periodic', scheduleName: 'nightly' });
    expect(stored?.attempts).toMatchObject([{ run: 1, attempt: 1, node: 'n', outcome: 'running', endedAt: null, error: null, checkIns: [{ message: '$$ROOT' }] }]);
  });

  it(`mongo: a task keeps its latest ${MAX_ATTEMPTS_KEPT} attempt records, and run numbers go on`, async () => {
    const repo = fixture().repository;
    const { task } = await repo.insert({ workId: 'w', scheduledAt: PAST() });
    const runs = MAX_ATTEMPTS_KEPT + 2;
    for (let i = 0; i < runs; i++) {
      const claimed = await repo.claim(task.id, { owner: 'n', leaseMs: 60_000 });
      await repo.release(task.id, claimed!.lease!.token, { runAt: PAST(), refundAttempt: true });
    }
    const attempts = await repo.listAttempts(task.id);
    expect(attempts).toHaveLength(MAX_ATTEMPTS_KEPT);
    expect(attempts.map((a) => a.run)).toEqual(Array.from({ length: MAX_ATTEMPTS_KEPT }, (_, i) => runs - MAX_ATTEMPTS_KEPT + i + 1));
    expect(attempts.every((a) => a.outcome === 'released' && a.attempt === 1)).toBe(true);
  });

  it('mongo: writes past their ticket deadline are numbered again and still seen', async () => {
    // A 1 ms ticket: most writes run past their deadline, stamp no number, and are numbered again.
    const dbName = databaseOf.get(fixture().repository)!;
    const hasty = new MongoRepository({ uri: MONGODB_URI!, dbName, changeTicketTtlMs: 1, changeTicketExpiryMs: 60_000 });
    try {
      const { cursor } = await drainIds(fixture().repository, null);
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await hasty.insert({ workId: 'w', scheduledAt: PAST(), param: i })).task.id);
      const batch = await hasty.insertMany(Array.from({ length: 10 }, (_, i) => ({ workId: 'w', scheduledAt: PAST(), param: i })));
      ids.push(...batch.map((r) => r.task.id));
      const seen = await drainIds(fixture().repository, cursor);
      expect([...new Set(seen.ids)].sort()).toEqual([...ids].sort());
      expect(await database().collection('horae_tasks').countDocuments({ seq: null })).toBe(0);
    } finally {
      await hasty.close();
    }
  });
}
