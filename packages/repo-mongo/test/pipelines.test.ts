/**
 * The transitions run over documents on a model of MongoDB's filter and expression semantics (pipeline-model.ts),
 * without a server: each test writes through the same builders as MongoRepository and reads the result through
 * toTaskInfo. This checks the adapter's logic (which stage reads what, what an old document defaults to, the claim
 * order); it cannot check the server itself, which only the conformance suite with MONGODB_URI does.
 */
import { describe, expect, it } from 'vitest';
import type { Document } from 'mongodb';
import { normalizeNewTask, poisonTaskError } from '@horae/storage';
import type { NewTask, TaskInfo } from '@horae/storage';
import {
  AGED_DUE_SORT,
  CLAIM_ORDER_EXPRESSION,
  LEASE_EXPIRED_ERROR,
  PRIORITY_DUE_SORT,
  agedCandidatesPipeline,
  claimAheadPipeline,
  claimFilter,
  claimPipeline,
  claimRefusalPipeline,
  dueFilter,
  endPipeline,
  expiredFilter,
  insertFilter,
  insertPipeline,
  leaseFilter,
  patchPipeline,
  reclaimPipeline,
  releasePipeline,
  startPipeline,
  startedLeaseFilter,
  unstartedLeaseFilter,
} from '../src/queries.js';
import { MIGRATIONS } from '../src/schema.js';
import type { SchemaTarget } from '../src/schema.js';
import { toTaskAttempt, toTaskInfo } from '../src/task-document.js';
import type { AttemptDocument, TaskDocument } from '../src/task-document.js';
import { aggregate, applyPipeline, evaluate, findOneAndUpdate, matches } from './pipeline-model.js';
import type { Doc } from './pipeline-model.js';

const T0 = Date.UTC(2030, 0, 1);
const at = (ms: number): Date => new Date(T0 + ms);
const ticket = { seq: 1, deadline: at(24 * 3_600_000) };

/** A collection of task documents and the server's clock, driven through the adapter's builders. */
class Model {
  readonly docs: Doc[] = [];
  now = at(0);

  insert(task: NewTask & { id: string }): TaskInfo {
    const filter = insertFilter(task.id);
    // An upsert that matches nothing starts from the filter's equality fields: the _id.
    expect(this.docs.some((doc) => matches(doc, filter, this.now))).toBe(false);
    const doc = applyPipeline({ _id: task.id }, insertPipeline(normalizeNewTask(task), ticket), this.now);
    this.docs.push(doc);
    return toTaskInfo(doc as unknown as TaskDocument);
  }

  write(filter: Document, pipeline: Document[], sort?: Document): TaskInfo | null {
    const doc = findOneAndUpdate(this.docs, filter, pipeline, this.now, sort);
    return doc === null ? null : toTaskInfo(doc as unknown as TaskDocument);
  }

  raw(id: string): Doc {
    const doc = this.docs.find((d) => d._id === id);
    if (doc === undefined) throw new Error(`no document ${id}`);
    return doc;
  }

  task(id: string): TaskInfo {
    return toTaskInfo(this.raw(id) as unknown as TaskDocument);
  }

  attempts(id: string) {
    return ((this.raw(id).attempts ?? []) as AttemptDocument[]).map((a) => toTaskAttempt(id, a));
  }

  claim(id: string, owner = 'n', leaseMs = 60_000, ifScheduledAt?: Date): TaskInfo | null {
    return this.write(claimFilter(id, ifScheduledAt), claimPipeline(owner, `tok-${id}-${this.docs.length}-${Math.random()}`, leaseMs, ticket));
  }

  claimAhead(owner = 'n', leaseMs = 60_000, sort: Document = AGED_DUE_SORT): TaskInfo | null {
    return this.write(dueFilter(), claimAheadPipeline(owner, `tok-${Math.random()}`, leaseMs, ticket), sort);
  }

  reclaim(maxUnstartedClaims = 3): TaskInfo | null {
    return this.write(expiredFilter(), reclaimPipeline(maxUnstartedClaims, ticket), { 'lease.until': 1, _id: 1 });
  }
}

describe('the model itself (MongoDB semantics the pipelines rely on)', () => {
  it('a missing field is not false, and $ifNull and $arrayElemAt treat it as the manual says', () => {
    const doc = { a: 1, lease: { owner: 'n' }, list: [{ run: 1 }, { run: 2 }] };
    const now = at(0);
    expect(evaluate({ $ne: ['$lease.started', false] }, doc, now)).toBe(true);
    expect(evaluate({ $ne: ['$lease.started', false] }, { lease: null }, now)).toBe(true);
    expect(evaluate({ $ne: ['$lease.started', false] }, { lease: { started: false } }, now)).toBe(false);
    expect(evaluate({ $ifNull: ['$missing', '$a'] }, doc, now)).toBe(1);
    expect(evaluate({ $arrayElemAt: ['$list.run', -1] }, doc, now)).toBe(2);
    expect(evaluate({ $arrayElemAt: ['$missing.run', -1] }, doc, now)).toBeNull();
    expect(matches(doc, { 'lease.started': { $ne: false } }, now)).toBe(true);
    expect(matches(doc, { 'lease.started': false }, now)).toBe(false);
  });

  it('every expression of one $set stage reads the stage input, not what the stage sets', () => {
    expect(applyPipeline({ a: 1 }, [{ $set: { a: 2, b: '$a' } }, { $set: { c: '$a' } }], at(0))).toEqual({ a: 2, b: 1, c: 2 });
  });

  it('refuses an operator it does not model', () => {
    expect(() => evaluate({ $dateAdd: {} }, {}, at(0))).toThrow(/does not know/);
  });
});

describe('insert', () => {
  it('counts no claim, and stores the aged key of its priority and due time', () => {
    const m = new Model();
    const task = m.insert({ id: 'a', workId: 'w', scheduledAt: at(5_000), priority: 3 });
    expect(task).toMatchObject({ state: 'Initialized', attempt: 0, claims: 0, unstartedClaims: 0, lease: null });
    expect(m.raw('a').claimOrder).toBe(3 * 10_000 - at(5_000).getTime());
  });
});

describe('claim by id', () => {
  it('matches only once the task is due by the server clock ($$NOW), and then starts the run', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(1_000), maxAttempts: 3 });
    m.now = at(999);
    expect(m.claim('a')).toBeNull();
    expect(m.task('a')).toMatchObject({ state: 'Initialized', claims: 0 });
    // The refusal read tells how long until due, by the same clock.
    expect(aggregate(m.docs, claimRefusalPipeline('a'), m.now)).toEqual([{ _id: 'a', state: 'Initialized', scheduledAt: at(1_000), dueInMs: 1 }]);
    m.now = at(1_000);
    const claimed = m.claim('a', 'node-1', 30_000);
    expect(claimed).toMatchObject({ state: 'Working', attempt: 1, claims: 1, unstartedClaims: 0, progress: null });
    expect(claimed?.lease).toMatchObject({ owner: 'node-1', until: at(31_000), started: true });
    expect(m.attempts('a')).toEqual([{ taskId: 'a', run: 1, attempt: 1, node: 'node-1', startedAt: at(1_000), endedAt: null, outcome: 'running', error: null, checkIns: [] }]);
    expect(m.claim('a')).toBeNull();
  });

  it('with ifScheduledAt, matches only the due time the caller saw', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.now = at(10);
    expect(m.claim('a', 'n', 1_000, at(1))).toBeNull();
    expect(m.claim('a', 'n', 1_000, at(0))).not.toBeNull();
  });

  it('resets the unstarted claims of earlier claims ahead', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.claimAhead('dead', 0);
    m.reclaim();
    expect(m.task('a')).toMatchObject({ unstartedClaims: 1, claims: 1 });
    expect(m.claim('a')).toMatchObject({ unstartedClaims: 0, claims: 2, attempt: 1 });
  });
});

describe('claim ahead, then markAsStarted', () => {
  it('claims ahead unstarted: a claim, no attempt, no record; a run-ending write is refused until the run starts', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.now = at(100);
    const claimed = m.claimAhead('node-1', 5_000);
    expect(claimed).toMatchObject({ state: 'Working', attempt: 0, claims: 1, unstartedClaims: 0, progress: null });
    expect(claimed?.lease).toMatchObject({ owner: 'node-1', until: at(5_100), started: false });
    expect(m.attempts('a')).toEqual([]);
    const token = claimed!.lease!.token;
    // markAsDone / markAsFailed with the token match nothing: the adapter then throws InvalidStateError.
    expect(matches(m.raw('a'), startedLeaseFilter('a', token), m.now)).toBe(false);
    expect(matches(m.raw('a'), leaseFilter('a', token), m.now)).toBe(true);

    // A start matches up to the last instant of the lease, never at or past its end: a run never starts on an
    // expired lease.
    expect(matches(m.raw('a'), unstartedLeaseFilter('a', token), at(5_099))).toBe(true);
    expect(matches(m.raw('a'), unstartedLeaseFilter('a', token), at(5_100))).toBe(false);

    m.now = at(200);
    const started = m.write(unstartedLeaseFilter('a', token), startPipeline(ticket));
    expect(started).toMatchObject({ state: 'Working', attempt: 1, claims: 1, unstartedClaims: 0 });
    // The lease is the same claim's: owner, token and end unchanged.
    expect(started?.lease).toEqual({ owner: 'node-1', token, until: at(5_100), started: true });
    expect(m.attempts('a')).toEqual([{ taskId: 'a', run: 1, attempt: 1, node: 'node-1', startedAt: at(200), endedAt: null, outcome: 'running', error: null, checkIns: [] }]);

    // A second start matches nothing (the adapter then reads it and returns it unchanged); the run may now end.
    expect(m.write(unstartedLeaseFilter('a', token), startPipeline(ticket))).toBeNull();
    expect(m.task('a').attempt).toBe(1);
    m.now = at(300);
    expect(m.write(startedLeaseFilter('a', token), endPipeline('Done', undefined, ticket, { outcome: 'succeeded', error: null }))).toMatchObject({ state: 'Done', lease: null });
    expect(m.attempts('a')).toMatchObject([{ run: 1, outcome: 'succeeded', endedAt: at(300) }]);
  });

  it('a claim ahead is not due before $$NOW reaches the due time', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(1_000) });
    m.now = at(999);
    expect(m.claimAhead()).toBeNull();
    m.now = at(1_000);
    expect(m.claimAhead()).not.toBeNull();
  });

  it('the second run of a task numbers its record after the first', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0), maxAttempts: 3 });
    const first = m.claim('a')!;
    m.write(leaseFilter('a', first.lease!.token), releasePipeline(at(0), { message: 'boom' }, false, ticket));
    const ahead = m.claimAhead()!;
    m.write(unstartedLeaseFilter('a', ahead.lease!.token), startPipeline(ticket));
    expect(m.attempts('a').map((a) => [a.run, a.attempt, a.outcome])).toEqual([
      [1, 1, 'retried'],
      [2, 2, 'running'],
    ]);
    expect(m.task('a')).toMatchObject({ attempt: 2, claims: 2 });
  });
});

describe('release and cancel of a claim', () => {
  it('an unstarted claim released goes back to Initialized: no attempt given back (none spent), no record', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0), maxAttempts: 3 });
    // One earlier run, so that a wrong refund would show.
    const first = m.claim('a')!;
    m.write(leaseFilter('a', first.lease!.token), releasePipeline(at(0), { message: 'boom' }, false, ticket));
    const ahead = m.claimAhead()!;
    const released = m.write(leaseFilter('a', ahead.lease!.token), releasePipeline(at(9_000), undefined, true, ticket));
    expect(released).toMatchObject({ state: 'Initialized', attempt: 1, claims: 2, lease: null, scheduledAt: at(9_000), lastError: { message: 'boom' } });
    expect(m.attempts('a').map((a) => a.outcome)).toEqual(['retried']);
  });

  it('a started run released with refundAttempt gives its attempt back and closes its record released', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    const ahead = m.claimAhead()!;
    m.write(unstartedLeaseFilter('a', ahead.lease!.token), startPipeline(ticket));
    expect(m.write(leaseFilter('a', ahead.lease!.token), releasePipeline(at(0), undefined, true, ticket))).toMatchObject({ attempt: 0, claims: 1 });
    expect(m.attempts('a').map((a) => a.outcome)).toEqual(['released']);
  });

  it('an unstarted claim cancelled records nothing; a started one closes its record cancelled', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.insert({ id: 'b', workId: 'w', scheduledAt: at(0) });
    const cancel = endPipeline('Cancelled', undefined, ticket, { outcome: 'cancelled', error: null });
    const a = m.write(claimFilter('a'), claimAheadPipeline('n', 'ta', 1_000, ticket))!;
    expect(m.write(leaseFilter('a', a.lease!.token), cancel)).toMatchObject({ state: 'Cancelled', attempt: 0 });
    expect(m.attempts('a')).toEqual([]);
    const b = m.claim('b')!;
    expect(m.write(leaseFilter('b', b.lease!.token), cancel)).toMatchObject({ state: 'Cancelled', attempt: 1 });
    expect(m.attempts('b').map((r) => r.outcome)).toEqual(['cancelled']);
  });
});

describe('reclaimExpired', () => {
  it('an expired claim ahead counts an unstarted claim and is due again now, attempt and lastError untouched; at the limit it is poison', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0), maxAttempts: 1 });
    for (let n = 1; n <= 2; n++) {
      m.now = at(n * 1_000);
      m.claimAhead(`dead-${n}`, 0);
      const reclaimed = m.reclaim(3);
      expect(reclaimed).toMatchObject({ state: 'Initialized', attempt: 0, claims: n, unstartedClaims: n, lease: null, lastError: null, scheduledAt: m.now });
    }
    m.now = at(3_000);
    m.claimAhead('dead-3', 0);
    const poisoned = m.reclaim(3)!;
    expect(poisoned).toMatchObject({ state: 'Failed', attempt: 0, claims: 3, unstartedClaims: 3, lease: null });
    expect(poisoned.lastError).toEqual(poisonTaskError(3));
    expect(m.attempts('a')).toEqual([]);
    expect(m.reclaim(3)).toBeNull();
  });

  it('a lease that expires before reaching the limit was not yet expired by $$NOW a moment earlier', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.claimAhead('n', 1_000);
    m.now = at(999);
    expect(m.reclaim()).toBeNull();
    m.now = at(1_000);
    expect(m.reclaim()).toMatchObject({ state: 'Initialized', unstartedClaims: 1 });
  });

  it('a count already past a lowered limit fails with the count it reached', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.claimAhead('n', 0);
    m.reclaim(5);
    m.claimAhead('n', 0);
    m.reclaim(5);
    m.claimAhead('n', 0);
    expect(m.reclaim(1)?.lastError).toEqual(poisonTaskError(3));
  });

  it('maxUnstartedClaims 1 fails a task at its first unstarted expiry', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0) });
    m.claimAhead('n', 0);
    expect(m.reclaim(1)).toMatchObject({ state: 'Failed', unstartedClaims: 1, lastError: poisonTaskError(1) });
  });

  it('a started run that expires spends its attempt as before: lease-expired, then Failed when attempts are spent', () => {
    const m = new Model();
    m.insert({ id: 'a', workId: 'w', scheduledAt: at(0), maxAttempts: 2 });
    m.claimAhead('n', 0);
    m.reclaim();
    // A lease that has not expired yet: a run never starts on an expired one.
    const ahead = m.claimAhead('n', 10)!;
    m.write(unstartedLeaseFilter('a', ahead.lease!.token), startPipeline(ticket));
    m.now = at(50);
    expect(m.reclaim()).toMatchObject({ state: 'Initialized', attempt: 1, claims: 2, unstartedClaims: 0, lastError: LEASE_EXPIRED_ERROR, scheduledAt: at(50) });
    m.claim('a', 'n', 0);
    expect(m.reclaim()).toMatchObject({ state: 'Failed', attempt: 2, claims: 3, lastError: LEASE_EXPIRED_ERROR, scheduledAt: at(50) });
    expect(m.attempts('a').map((a) => [a.run, a.outcome])).toEqual([
      [1, 'lease-expired'],
      [2, 'lease-expired'],
    ]);
  });
});

describe('documents written by an older version (no claims, unstartedClaims, lease.started, claimOrder)', () => {
  const legacy = (overrides: Doc): Doc => ({
    _id: 'old',
    workId: 'w',
    param: 'null',
    scheduledAt: at(0),
    state: 'Initialized',
    priority: 0,
    attempt: 2,
    maxAttempts: 5,
    lease: null,
    lastError: null,
    uniqueKey: null,
    progress: null,
    createdAt: at(0),
    updatedAt: at(0),
    live: true,
    seq: 1,
    kind: 'scheduled',
    scheduleName: null,
    attempts: [],
    ...overrides,
  });

  it('a running one is a started run: it may end, cannot be started again, and expires as a started run', () => {
    const m = new Model();
    m.docs.push(legacy({ state: 'Working', lease: { owner: 'old-node', until: at(1_000), token: 'tok' } }));
    expect(m.task('old')).toMatchObject({ attempt: 2, claims: 2, unstartedClaims: 0, lease: { started: true } });
    expect(matches(m.raw('old'), startedLeaseFilter('old', 'tok'), m.now)).toBe(true);
    expect(matches(m.raw('old'), unstartedLeaseFilter('old', 'tok'), m.now)).toBe(false);
    m.now = at(1_000);
    expect(m.reclaim()).toMatchObject({ state: 'Initialized', attempt: 2, claims: 2, unstartedClaims: 0, lastError: LEASE_EXPIRED_ERROR });
  });

  it('a waiting one counts its claims on from its attempts, and gets its aged key at its next write', () => {
    const m = new Model();
    m.docs.push(legacy({ priority: 1 }));
    expect(m.claimAhead('n', 1_000, PRIORITY_DUE_SORT)).toMatchObject({ attempt: 2, claims: 3, unstartedClaims: 0 });
    expect(m.raw('old').claimOrder).toBe(10_000 - at(0).getTime());
    m.docs.length = 0;
    m.docs.push(legacy({}));
    expect(m.claim('old')).toMatchObject({ attempt: 3, claims: 3 });
  });

  it('the schema version 3 migration gives them the values reads default to, and the key every write stores', async () => {
    const docs = [legacy({ _id: 'w' }), legacy({ _id: 'r', state: 'Working', lease: { owner: 'o', until: at(5), token: 't' } }), legacy({ _id: 'd', state: 'Done', live: false })];
    const before = docs.map((doc) => toTaskInfo(doc as unknown as TaskDocument));
    const target: SchemaTarget = {
      tasks: {
        createIndexes: (indexes) => Promise.resolve(indexes.map((index) => index.name ?? '')),
        updateMany: (filter, update) => {
          for (const [i, doc] of docs.entries()) {
            if (!matches(doc, filter, at(0))) continue;
            if (Array.isArray(update)) docs[i] = applyPipeline(doc, update, at(0));
            else for (const [path, value] of Object.entries(asSet(update))) setPath(docs[i]!, path, value);
          }
          return Promise.resolve();
        },
      },
      meta: { findOne: () => Promise.resolve(null), updateOne: () => Promise.resolve() },
      hookOutbox: { createIndexes: (indexes) => Promise.resolve(indexes.map((index) => index.name ?? '')) },
    };
    await MIGRATIONS.find((migration) => migration.version === 3)!.up(target);
    // Nothing a reader sees changes (updatedAt and seq included).
    expect(docs.map((doc) => toTaskInfo(doc as unknown as TaskDocument))).toEqual(before);
    for (const doc of docs) {
      expect(doc).toMatchObject({ claims: 2, unstartedClaims: 0, claimOrder: -at(0).getTime(), seq: 1, updatedAt: at(0) });
      expect(doc.claimOrder).toBe(evaluate(CLAIM_ORDER_EXPRESSION, doc, at(0)));
    }
    expect(docs[1]!.lease).toEqual({ owner: 'o', until: at(5), token: 't', started: true });
    expect(docs[0]!.lease).toBeNull();
  });
});

describe('the claim order', () => {
  /** Priority, due time (ms after T0) and creation (ms after T0) of each task. */
  const specs: Array<[id: string, priority: number, due: number, created: number]> = [
    ['low-old', 0, 0, 0],
    ['high-new', 3, 55_000, 1],
    ['mid', 1, 30_000, 2],
    // Ties with 'mid' for agingMs 10000: priority 0, due 10 s earlier (1 + 30 s waited = 0 + 40 s waited).
    ['tie-earlier', 0, 20_000, 3],
    ['tie-same-due-older', 1, 30_000, 1],
    ['negative', -2, 1_000, 4],
    ['fraction', 0.5, 25_000, 5],
    ['not-due', 100, 60_001, 6],
    ['due-now', 2, 60_000, 7],
  ];
  const now = at(60_000);

  const build = (): Model => {
    const m = new Model();
    for (const [id, priority, due, created] of specs) {
      m.now = at(created);
      m.insert({ id, workId: id === 'negative' ? 'other' : 'w', scheduledAt: at(due), priority });
    }
    m.now = now;
    return m;
  };

  /** The contract's order, computed apart: effective priority by exact integer arithmetic, then due, created, id. */
  const expected = (agingMs: number, workIds?: string[]): string[] =>
    specs
      .filter(([id, , due]) => due <= 60_000 && (workIds === undefined || workIds.includes(id === 'negative' ? 'other' : 'w')))
      .map(([id, priority, due, created]) => ({ id, due, created, key: agingMs === Infinity ? priority : priority * agingMs + (60_000 - due) }))
      .sort((a, b) => b.key - a.key || a.due - b.due || a.created - b.created || (a.id < b.id ? -1 : 1))
      .map((t) => t.id);

  const claimAll = (m: Model, sort: Document): string[] => {
    const ids: string[] = [];
    for (let task = m.claimAhead('n', 1_000, sort); task !== null; task = m.claimAhead('n', 1_000, sort)) ids.push(task.id);
    return ids;
  };

  it('the default aging (10 s a priority point) walks the stored key in the contract order, ties broken by due time', () => {
    const order = claimAll(build(), AGED_DUE_SORT);
    expect(order).toEqual(expected(10_000));
    // Written out, so that the reference above is checked too: four tasks tie at 40 s of effective wait.
    expect(order).toEqual(['low-old', 'tie-earlier', 'fraction', 'tie-same-due-older', 'mid', 'negative', 'high-new', 'due-now']);
  });

  it('agingMs Infinity orders by priority alone', () => {
    expect(claimAll(build(), PRIORITY_DUE_SORT)).toEqual(expected(Infinity));
  });

  it('another aging is computed by the candidates aggregation, in the same order, and honours workIds', () => {
    for (const agingMs of [1, 2_500, 40_000, 0.5]) {
      const ids = aggregate(build().docs, agedCandidatesPipeline(undefined, agingMs, 100), now).map((doc) => doc._id);
      expect(ids, `agingMs ${agingMs}`).toEqual(expected(agingMs));
    }
    expect(aggregate(build().docs, agedCandidatesPipeline(['w'], 2_500, 3), now).map((doc) => doc._id)).toEqual(expected(2_500, ['w']).slice(0, 3));
  });

  it('the stored key follows every change of priority or due time: update, release, reclaim', () => {
    const m = build();
    const key = (id: string): unknown => m.raw(id).claimOrder;
    m.write({ _id: 'mid', state: 'Initialized' }, patchPipeline({ priority: 7 }, ticket));
    expect(key('mid')).toBe(7 * 10_000 - at(30_000).getTime());
    m.write({ _id: 'mid', state: 'Initialized' }, patchPipeline({ scheduledAt: at(40_000) }, ticket));
    expect(key('mid')).toBe(7 * 10_000 - at(40_000).getTime());
    const claimed = m.claim('low-old', 'n', 0)!;
    m.write(leaseFilter('low-old', claimed.lease!.token), releasePipeline(at(45_000), undefined, false, ticket));
    expect(key('low-old')).toBe(-at(45_000).getTime());
    // A claim ahead, so that the reclaim makes it Initialized again (its one attempt is spent).
    m.write(claimFilter('low-old'), claimAheadPipeline('n', 't', 0, ticket));
    m.now = at(70_000);
    expect(m.reclaim()).toMatchObject({ id: 'low-old', state: 'Initialized' });
    expect(key('low-old')).toBe(-at(70_000).getTime());
  });
});

function asSet(update: Document): Doc {
  const set = (update as { $set?: Doc }).$set;
  if (set === undefined || Object.keys(update).length !== 1) throw new Error('the migration model takes $set updates only');
  return set;
}

function setPath(doc: Doc, path: string, value: unknown): void {
  const parts = path.split('.');
  let target = doc;
  for (const part of parts.slice(0, -1)) target = target[part] as Doc;
  target[parts.at(-1)!] = value;
}
