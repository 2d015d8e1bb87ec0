import { describe, expect, it } from 'vitest';
import type { Document } from 'mongodb';
import { MAX_CHECK_INS_PER_ATTEMPT, normalizeNewTask, poisonTaskError } from '@horae/storage';
import {
  AGED_DUE_SORT,
  CLAIM_ORDER_EXPRESSION,
  DEFAULT_AGING_MS,
  LEASE_EXPIRED_ERROR,
  MAX_ATTEMPTS_KEPT,
  POISON_MESSAGE_PARTS,
  PRIORITY_DUE_SORT,
  TASK_PROJECTION,
  agedCandidatesPipeline,
  cancellableFilter,
  checkInExpression,
  closeAttemptExpression,
  changesFilter,
  claimAheadPipeline,
  claimDueSort,
  claimFilter,
  claimOrderExpression,
  claimPipeline,
  claimRefusalPipeline,
  dueFilter,
  endPipeline,
  expiredFilter,
  finalizeStage,
  insertFilter,
  insertPipeline,
  leaseFilter,
  listDueFilter,
  listFilter,
  openAttemptStage,
  patchPipeline,
  poisonErrorExpression,
  progressPipeline,
  reclaimPipeline,
  releasePipeline,
  renewPipeline,
  resequencePipeline,
  startPipeline,
  startedLeaseFilter,
  terminalBeforeFilter,
  unstartedLeaseFilter,
} from '../src/queries.js';

const ticket = { seq: 42, deadline: new Date('2030-01-01T00:00:10.000Z') };
const finalize = {
  $set: {
    live: { $in: ['$state', ['Initialized', 'Working']] },
    claimOrder: { $subtract: [{ $multiply: ['$priority', { $literal: 10_000 }] }, { $toLong: '$scheduledAt' }] },
    updatedAt: '$$NOW',
    seq: { $cond: [{ $lt: ['$$NOW', { $literal: ticket.deadline }] }, { $literal: 42 }, null] },
  },
};
const ATTEMPTS = { $ifNull: ['$attempts', []] };
/** Started: `lease.started` true, or absent (a lease of an older version, which always started its run). */
const STARTED = { $ne: ['$lease.started', false] };
const DUE = { $lte: ['$scheduledAt', '$$NOW'] };

/** The expected `attempts` of a transition that closes the running record (only when the task was Working, started). */
const closing = (outcome: string, error: unknown) => ({
  $cond: [
    { $and: [{ $eq: ['$state', 'Working'] }, STARTED] },
    {
      $map: {
        input: ATTEMPTS,
        in: {
          $cond: [
            { $eq: ['$$this.outcome', 'running'] },
            { $mergeObjects: ['$$this', { endedAt: '$$NOW', outcome: { $literal: outcome }, error: { $literal: error } }] },
            '$$this',
          ],
        },
      },
    },
    ATTEMPTS,
  ],
});
const opening = (node: unknown) => ({
  $set: {
    attempts: {
      $slice: [
        {
          $concatArrays: [
            ATTEMPTS,
            [
              {
                run: { $add: [{ $ifNull: [{ $arrayElemAt: ['$attempts.run', -1] }, 0] }, 1] },
                attempt: '$attempt',
                node,
                startedAt: '$$NOW',
                endedAt: { $literal: null },
                outcome: { $literal: 'running' },
                error: { $literal: null },
                checkIns: { $literal: [] },
              },
            ],
          ],
        },
        -MAX_ATTEMPTS_KEPT,
      ],
    },
  },
});

describe('write builders', () => {
  it('finalizeStage recomputes live and the aged claim key, stamps updatedAt from $$NOW and the sequence only before the deadline', () => {
    expect(finalizeStage(ticket)).toEqual(finalize);
    expect(finalize.$set.claimOrder).toEqual(CLAIM_ORDER_EXPRESSION);
    expect(DEFAULT_AGING_MS).toBe(10_000);
  });

  it('insert is an upsert that never matches an existing document, with every caller value a $literal', () => {
    expect(insertFilter('t1')).toEqual({ _id: 't1', state: { $exists: false } });
    const scheduledAt = new Date('2030-01-01T00:00:00.000Z');
    const task = normalizeNewTask({ workId: '$where', scheduledAt, param: { $set: { 'a.b': 1 } }, uniqueKey: '$key', priority: 3, maxAttempts: 2 });
    expect(insertPipeline(task, ticket)).toEqual([
      {
        $set: {
          workId: { $literal: '$where' },
          param: { $literal: '{"$set":{"a.b":1}}' },
          scheduledAt: { $literal: scheduledAt },
          state: { $literal: 'Initialized' },
          priority: { $literal: 3 },
          attempt: { $literal: 0 },
          claims: { $literal: 0 },
          unstartedClaims: { $literal: 0 },
          maxAttempts: { $literal: 2 },
          lease: { $literal: null },
          lastError: { $literal: null },
          uniqueKey: { $literal: '$key' },
          progress: { $literal: null },
          kind: { $literal: 'scheduled' },
          scheduleName: { $literal: null },
          attempts: { $literal: [] },
          createdAt: '$$NOW',
        },
      },
      finalize,
    ]);
  });

  it('insert stores the kind and the schedule name as literals, with an empty history', () => {
    const scheduledAt = new Date('2030-01-01T00:00:00.000Z');
    const [periodic] = insertPipeline(normalizeNewTask({ workId: 'w', scheduledAt, scheduleName: '$nightly' }), ticket);
    expect(periodic?.$set).toMatchObject({ kind: { $literal: 'periodic' }, scheduleName: { $literal: '$nightly' }, attempts: { $literal: [] } });
    const [immediate] = insertPipeline(normalizeNewTask({ workId: 'w', scheduledAt, kind: 'immediate' }), ticket);
    expect(immediate?.$set).toMatchObject({ kind: { $literal: 'immediate' }, scheduleName: { $literal: null } });
  });

  it('claim by id filters on Initialized, the due time seen, and due by $$NOW (never a node time)', () => {
    expect(claimFilter('t1')).toEqual({ _id: 't1', state: 'Initialized', $expr: DUE });
    const at = new Date('2030-01-01T00:00:00.000Z');
    expect(claimFilter('t1', at)).toEqual({ _id: 't1', state: 'Initialized', scheduledAt: at, $expr: DUE });
  });

  it('claim by id starts the run: a lease (started) ending at $$NOW + leaseMs, a claim and an attempt counted, unstarted claims reset, progress cleared', () => {
    expect(claimPipeline('$owner', 'tok', 0, ticket)).toEqual([
      {
        $set: {
          state: { $literal: 'Working' },
          claims: { $add: [{ $ifNull: ['$claims', '$attempt'] }, 1] },
          lease: { $mergeObjects: [{ $literal: { owner: '$owner', token: 'tok', started: true } }, { until: { $add: ['$$NOW', { $literal: 0 }] } }] },
          progress: { $literal: null },
          attempt: { $add: ['$attempt', 1] },
          unstartedClaims: { $literal: 0 },
        },
      },
      opening({ $literal: '$owner' }),
      finalize,
    ]);
  });

  it('a claim opens a running record after the claim stage: run one past the last, the new attempt counter, $$NOW', () => {
    expect(openAttemptStage('$$ROOT')).toEqual(opening({ $literal: '$$ROOT' }));
    // A run started by markAsStarted names its node from the stored lease, never from a caller's value.
    expect(openAttemptStage({ fromLease: true })).toEqual(opening('$lease.owner'));
    const [claim, open] = claimPipeline('n', 'tok', 1, ticket);
    // The record reads the incremented `attempt`, so it must come in a later stage than the increment.
    expect(Object.keys(claim?.$set as object)).toContain('attempt');
    expect(Object.keys(open?.$set as object)).toEqual(['attempts']);
  });

  it('a refused claim by id is told apart by one read that carries the server time: dueInMs = scheduledAt − $$NOW', () => {
    expect(claimRefusalPipeline('$t')).toEqual([{ $match: { _id: '$t' } }, { $project: { state: 1, scheduledAt: 1, dueInMs: { $subtract: ['$scheduledAt', '$$NOW'] } } }]);
  });

  it('claimDue compares the due time with $$NOW, never with a node time', () => {
    expect(dueFilter()).toEqual({ state: 'Initialized', $expr: DUE });
    expect(dueFilter(['a', 'b'])).toEqual({ state: 'Initialized', $expr: DUE, workId: { $in: ['a', 'b'] } });
  });

  it('claimDue claims ahead: Working under an unstarted lease, a claim counted, no attempt, no record', () => {
    expect(claimAheadPipeline('$owner', 'tok', 500, ticket)).toEqual([
      {
        $set: {
          state: { $literal: 'Working' },
          claims: { $add: [{ $ifNull: ['$claims', '$attempt'] }, 1] },
          lease: { $mergeObjects: [{ $literal: { owner: '$owner', token: 'tok', started: false } }, { until: { $add: ['$$NOW', { $literal: 500 }] } }] },
          progress: { $literal: null },
          unstartedClaims: { $ifNull: ['$unstartedClaims', 0] },
        },
      },
      finalize,
    ]);
    const [stage] = claimAheadPipeline('n', 'tok', 1, ticket);
    expect(Object.keys(stage?.$set as object)).not.toContain('attempt');
    expect(Object.keys(stage?.$set as object)).not.toContain('attempts');
  });

  it('claimDue sorts on the stored aged key for the default aging, on priority for Infinity, and computes any other', () => {
    expect(AGED_DUE_SORT).toEqual({ claimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 });
    expect(PRIORITY_DUE_SORT).toEqual({ priority: -1, scheduledAt: 1, createdAt: 1, _id: 1 });
    expect(claimDueSort(10_000)).toBe(AGED_DUE_SORT);
    expect(claimDueSort(Infinity)).toBe(PRIORITY_DUE_SORT);
    expect(claimDueSort(5_000)).toBeNull();
    expect(claimDueSort(10_001)).toBeNull();
    // The key: priority × agingMs − scheduledAt in ms, so that it is exact for integer priorities.
    expect(claimOrderExpression(250)).toEqual({ $subtract: [{ $multiply: ['$priority', { $literal: 250 }] }, { $toLong: '$scheduledAt' }] });
    expect(agedCandidatesPipeline(['w'], 250, 7)).toEqual([
      { $match: { state: 'Initialized', $expr: DUE, workId: { $in: ['w'] } } },
      { $set: { agedClaimOrder: claimOrderExpression(250) } },
      { $sort: { agedClaimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 } },
      { $limit: 7 },
      { $project: { _id: 1 } },
    ]);
  });

  it('markAsStarted needs the unstarted claim under its token, its lease not expired by $$NOW; it counts the attempt, resets unstarted claims, sets started and opens the record', () => {
    expect(unstartedLeaseFilter('t1', 'tok')).toEqual({
      _id: 't1',
      state: 'Working',
      'lease.token': 'tok',
      'lease.started': false,
      $expr: { $gt: ['$lease.until', '$$NOW'] },
    });
    expect(startPipeline(ticket)).toEqual([
      {
        $set: {
          attempt: { $add: ['$attempt', 1] },
          unstartedClaims: { $literal: 0 },
          lease: { $mergeObjects: ['$lease', { $literal: { started: true } }] },
          progress: { $literal: null },
        },
      },
      opening('$lease.owner'),
      finalize,
    ]);
  });

  it('fenced writes filter on Working and the token; the writes that end a run also on a started run (or a lease of an older version)', () => {
    expect(leaseFilter('t1', 'tok')).toEqual({ _id: 't1', state: 'Working', 'lease.token': 'tok' });
    expect(startedLeaseFilter('t1', 'tok')).toEqual({ _id: 't1', state: 'Working', 'lease.token': 'tok', 'lease.started': { $ne: false } });
    expect(cancellableFilter('t1')).toEqual({ _id: 't1', state: { $in: ['Initialized', 'Working'] } });
  });

  it('renewLease merges a new end into the lease (a pipeline takes no dotted path)', () => {
    expect(renewPipeline(5_000, ticket)).toEqual([{ $set: { lease: { $mergeObjects: ['$lease', { until: { $add: ['$$NOW', { $literal: 5_000 }] } }] } } }, finalize]);
  });

  it('release clears the lease, refunds an attempt (never below 0) only of a started run, and keeps or replaces lastError', () => {
    const runAt = new Date('2030-01-01T00:00:00.000Z');
    expect(releasePipeline(runAt, undefined, false, ticket)).toEqual([
      {
        $set: {
          state: { $literal: 'Initialized' },
          scheduledAt: { $literal: runAt },
          lease: { $literal: null },
          attempt: '$attempt',
          lastError: '$lastError',
          attempts: closing('released', null),
        },
      },
      finalize,
    ]);
    const [stage] = releasePipeline(runAt, { message: 'm', code: 'C' }, true, ticket);
    expect(stage).toEqual({
      $set: {
        state: { $literal: 'Initialized' },
        scheduledAt: { $literal: runAt },
        lease: { $literal: null },
        attempt: { $cond: [STARTED, { $max: [0, { $subtract: ['$attempt', 1] }] }, '$attempt'] },
        lastError: { $literal: { message: 'm', code: 'C' } },
        attempts: closing('retried', { message: 'm', code: 'C' }),
      },
    });
  });

  it('end states clear the lease; lastError is replaced only when given', () => {
    expect(endPipeline('Done', undefined, ticket)).toEqual([{ $set: { state: { $literal: 'Done' }, lease: { $literal: null }, lastError: '$lastError' } }, finalize]);
    expect(endPipeline('Failed', { message: '$x' }, ticket)[0]).toEqual({ $set: { state: { $literal: 'Failed' }, lease: { $literal: null }, lastError: { $literal: { message: '$x' } } } });
  });

  it('an end with an outcome closes the running record in the same stage as the state change', () => {
    expect(endPipeline('Done', undefined, ticket, { outcome: 'succeeded', error: null })).toEqual([
      { $set: { state: { $literal: 'Done' }, lease: { $literal: null }, lastError: '$lastError', attempts: closing('succeeded', null) } },
      finalize,
    ]);
    const attemptsOf = (pipeline: Document[]): unknown => (pipeline[0]?.$set as { attempts?: unknown }).attempts;
    expect(attemptsOf(endPipeline('Failed', { message: '$x' }, ticket, { outcome: 'failed', error: { message: '$x' } }))).toEqual(closing('failed', { message: '$x' }));
    expect(attemptsOf(endPipeline('Cancelled', undefined, ticket, { outcome: 'cancelled', error: null }))).toEqual(closing('cancelled', null));
    // A task failed before it ever ran records nothing.
    expect(attemptsOf(endPipeline('Failed', { message: 'x' }, ticket))).toBeUndefined();
    expect(closeAttemptExpression({ outcome: 'lease-expired', error: LEASE_EXPIRED_ERROR })).toEqual(closing('lease-expired', LEASE_EXPIRED_ERROR));
  });

  it('update sets only the patched fields; an empty patch only touches', () => {
    const at = new Date('2030-01-01T00:00:00.000Z');
    expect(patchPipeline({ scheduledAt: at, param: { 'k.k': '$v' }, priority: 2 }, ticket)).toEqual([
      { $set: { scheduledAt: { $literal: at }, param: { $literal: '{"k.k":"$v"}' }, priority: { $literal: 2 } } },
      finalize,
    ]);
    expect(patchPipeline({ param: null }, ticket)[0]).toEqual({ $set: { param: { $literal: 'null' } } });
    expect(patchPipeline({}, ticket)).toEqual([finalize]);
  });

  it('setProgress replaces the whole progress, stamped with $$NOW; only a message touches the history', () => {
    expect(progressPipeline({ completed: 1, total: 2 }, ticket)).toEqual([{ $set: { progress: { $mergeObjects: [{ $literal: { completed: 1, total: 2 } }, { at: '$$NOW' }] } } }, finalize]);
    expect(progressPipeline({ completed: 1, total: 2, message: '$m' }, ticket)[0]).toEqual({
      $set: { progress: { $mergeObjects: [{ $literal: { completed: 1, total: 2, message: '$m' } }, { at: '$$NOW' }] }, attempts: checkInExpression('$m') },
    });
  });

  it('a check-in appends to the running record unless it repeats the last one, keeping the latest 50', () => {
    expect(MAX_CHECK_INS_PER_ATTEMPT).toBe(50);
    expect(checkInExpression('$$ROOT')).toEqual({
      $map: {
        input: ATTEMPTS,
        in: {
          $cond: [
            { $and: [{ $eq: ['$$this.outcome', 'running'] }, { $ne: [{ $arrayElemAt: ['$$this.checkIns.message', -1] }, { $literal: '$$ROOT' }] }] },
            {
              $mergeObjects: [
                '$$this',
                { checkIns: { $slice: [{ $concatArrays: [{ $ifNull: ['$$this.checkIns', []] }, [{ at: '$$NOW', message: { $literal: '$$ROOT' } }]] }, -50] } },
              ],
            },
            '$$this',
          ],
        },
      },
    });
  });

  it('task reads leave the history out; at most 40 attempt records are kept', () => {
    expect(TASK_PROJECTION).toEqual({ attempts: 0 });
    expect(MAX_ATTEMPTS_KEPT).toBe(40);
  });

  it('reclaimExpired finds leases ended by $$NOW; a started run spends its attempt, a claim ahead counts an unstarted claim and may be poison', () => {
    expect(expiredFilter()).toEqual({ state: 'Working', 'lease.until': { $type: 'date' }, $expr: { $lte: ['$lease.until', '$$NOW'] } });
    const unstartedAfter = { $add: [{ $ifNull: ['$unstartedClaims', 0] }, 1] };
    const poisoned = { $gte: [unstartedAfter, { $literal: 3 }] };
    expect(reclaimPipeline(3, ticket)).toEqual([
      {
        $set: {
          state: {
            $cond: [
              STARTED,
              { $cond: [{ $gte: ['$attempt', '$maxAttempts'] }, { $literal: 'Failed' }, { $literal: 'Initialized' }] },
              { $cond: [poisoned, { $literal: 'Failed' }, { $literal: 'Initialized' }] },
            ],
          },
          unstartedClaims: { $cond: [STARTED, { $ifNull: ['$unstartedClaims', 0] }, unstartedAfter] },
          lastError: { $cond: [STARTED, { $literal: LEASE_EXPIRED_ERROR }, { $cond: [poisoned, poisonErrorExpression(unstartedAfter), '$lastError'] }] },
          attempts: closing('lease-expired', { message: 'lease expired', code: 'LEASE_EXPIRED' }),
        },
      },
      {
        $set: {
          scheduledAt: { $cond: [{ $eq: ['$state', 'Initialized'] }, '$$NOW', '$scheduledAt'] },
          lease: { $literal: null },
        },
      },
      finalize,
    ]);
    expect(LEASE_EXPIRED_ERROR).toEqual({ message: 'lease expired', code: 'LEASE_EXPIRED' });
  });

  it('the poison error is built on the server from the storage package\'s own message, for any count', () => {
    for (const n of [1, 2, 3, 10, 123]) expect(`${POISON_MESSAGE_PARTS[0]}${n}${POISON_MESSAGE_PARTS[1]}`).toBe(poisonTaskError(n).message);
    const { message: _message, ...rest } = poisonTaskError(0);
    expect(poisonErrorExpression('$n' as never)).toEqual({
      $mergeObjects: [{ $literal: rest }, { message: { $concat: [{ $literal: POISON_MESSAGE_PARTS[0] }, { $toString: { $toInt: '$n' } }, { $literal: POISON_MESSAGE_PARTS[1] }] } }],
    });
    expect(rest).toEqual({ name: 'PoisonTaskError', code: 'POISON_TASK' });
  });

  it('resequencing stamps only the sequence', () => {
    expect(resequencePipeline(ticket)).toEqual([{ $set: { seq: finalize.$set.seq } }]);
  });
});

describe('read builders', () => {
  it('a change page reads after the position and up to the watermark', () => {
    expect(changesFilter({ seq: 5, id: null }, 9)).toEqual({ seq: { $gt: 5, $lte: 9 } });
    expect(changesFilter({ seq: 5, id: 'b' }, 9)).toEqual({ $or: [{ seq: 5, _id: { $gt: 'b' } }, { seq: { $gt: 5, $lte: 9 } }] });
  });

  it('listDue reads Initialized tasks due strictly before the date, after the page position', () => {
    const before = new Date('2030-01-01T00:00:00.000Z');
    const at = new Date('2029-01-01T00:00:00.000Z');
    expect(listDueFilter(before, null)).toEqual({ state: 'Initialized', scheduledAt: { $lt: before } });
    expect(listDueFilter(before, { at, id: 'x' })).toEqual({
      state: 'Initialized',
      scheduledAt: { $lt: before },
      $or: [{ scheduledAt: { $gt: at } }, { scheduledAt: at, _id: { $gt: 'x' } }],
    });
  });

  it('list filters by state and work, after the page position', () => {
    const at = new Date('2029-01-01T00:00:00.000Z');
    expect(listFilter({}, null)).toEqual({});
    expect(listFilter({ state: 'Done', workId: 'w' }, { at, id: 'x' })).toEqual({
      state: 'Done',
      workId: 'w',
      $or: [{ createdAt: { $gt: at } }, { createdAt: at, _id: { $gt: 'x' } }],
    });
  });

  it('deleteTerminalBefore matches only terminal states', () => {
    const before = new Date('2030-01-01T00:00:00.000Z');
    expect(terminalBeforeFilter(before)).toEqual({ state: { $in: ['Done', 'Cancelled', 'Failed'] }, updatedAt: { $lt: before } });
  });
});
