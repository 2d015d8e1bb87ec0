/**
 * Pure builders of the filters, update pipelines and sorts the adapter sends. Each returns a plain
 * object, so tests check its exact shape without a server.
 *
 * Two rules hold for every builder:
 * - every value that came from a caller is wrapped in `$literal` inside a pipeline (a string such as
 *   `"$where"` would otherwise be read as a field path) and compared by plain equality in a filter;
 * - every time the database keeps (updatedAt, createdAt, lease.until, progress.at, an attempt's startedAt,
 *   endedAt and check-in times) and every due or expiry check is computed from `$$NOW`, the server's clock,
 *   never the node's.
 *
 * The execution history is an `attempts` array embedded in the task document, changed by the same pipeline
 * as the transition it records: one `findOneAndUpdate`, so a record can never disagree with the state.
 */
import type { Document } from 'mongodb';
import { MAX_CHECK_INS_PER_ATTEMPT, TaskState, poisonTaskError } from '@horae/storage';
import type { AttemptOutcome, TaskError, TaskPatch } from '@horae/storage';
import type { ChangePosition, PagePosition } from './cursors.js';
import type { NormalizedNewTask } from '@horae/storage';
import { encodeParam } from './task-document.js';

/** A sequence number taken from the change log for one write, and until when that write may use it. */
export interface ChangeTicket {
  /** The sequence the write stamps on the documents it changes. */
  seq: number;
  /** A write evaluated at or after this instant (server clock) stamps null instead, to be sequenced again. */
  deadline: Date;
}

/** Wraps a caller's value so that no pipeline reads it as an expression or a field path. */
export function literal(value: unknown): Document {
  return { $literal: value };
}

const LIVE_STATES = [TaskState.Initialized, TaskState.Working];
const TERMINAL_STATES = [TaskState.Done, TaskState.Cancelled, TaskState.Failed];

/**
 * The last stage of every write: recomputes `live` from the state and the stored claim order from the priority
 * and due time (see {@link CLAIM_ORDER_EXPRESSION}), stamps `updatedAt` from the server's clock, and the change
 * sequence, or null when the write runs past its ticket's deadline. Recomputing the order on every write, rather
 * than only on the writes that change the priority or the due time, means no transition can leave it stale.
 *
 * @param ticket - the ticket of this write
 */
export function finalizeStage(ticket: ChangeTicket): Document {
  return {
    $set: {
      live: { $in: ['$state', LIVE_STATES] },
      claimOrder: CLAIM_ORDER_EXPRESSION,
      updatedAt: '$$NOW',
      seq: sequenceExpression(ticket),
    },
  };
}

/** The aging `claimDue` uses unless told otherwise, as the core Dispatcher's: a priority point per 10 s waited. */
export const DEFAULT_AGING_MS = 10_000;

/**
 * The aged claim key of a document for `agingMs`: `priority × agingMs − scheduledAt` (in ms since the epoch).
 *
 * `claimDue` orders due tasks by effective priority `priority + (now − scheduledAt) / agingMs`, highest first.
 * Multiplied by `agingMs` (> 0, so the order holds) that is `priority × agingMs − scheduledAt + now`, and `now` is
 * the same for every task of one claim: the order is that of this key, which does not depend on the time. So it
 * can be stored and indexed. It is kept in milliseconds, not divided by `agingMs`, so that integer priorities
 * give exact integer keys and two tasks whose effective priorities are equal tie exactly (then the due time
 * decides), with no rounding of a division.
 *
 * @param agingMs - a finite aging, > 0
 */
export function claimOrderExpression(agingMs: number): Document {
  return { $subtract: [{ $multiply: ['$priority', literal(agingMs)] }, { $toLong: '$scheduledAt' }] };
}

/**
 * The key stored on every task as `claimOrder` (for {@link DEFAULT_AGING_MS}) and indexed with the state, so
 * that `claimDue` with the default aging walks an index in claim order.
 */
export const CLAIM_ORDER_EXPRESSION: Document = claimOrderExpression(DEFAULT_AGING_MS);

/** `ticket.seq` while the server's clock is before the ticket's deadline, else null. */
export function sequenceExpression(ticket: ChangeTicket): Document {
  return { $cond: [{ $lt: ['$$NOW', literal(ticket.deadline)] }, literal(ticket.seq), null] };
}

/**
 * The most attempt records one task document keeps: the latest. A MongoDB document holds at most 16 MiB,
 * and one record may reach about 300 KiB (50 check-ins of 2,000 characters, an error with its stack), so
 * a task given back at many graceful stops could otherwise grow a document the server refuses, and then
 * could not be claimed at all. Run numbers go on counting past it.
 */
export const MAX_ATTEMPTS_KEPT = 40;

/** How a run ended, as a transition out of Working records it on the running attempt. */
export interface AttemptEnd {
  /** Every outcome but `running`. */
  outcome: Exclude<AttemptOutcome, 'running'>;
  /** The error the run ended with, already bounded; null for none. */
  error: TaskError | null;
}

/**
 * The projection of every task read: the execution history stays in the database (only `listAttempts`
 * reads it), so a claim or a sync page costs the same however many runs a task had.
 */
export const TASK_PROJECTION: Document = { attempts: 0 };

/** The stored history, or none for a document written before schema version 2. */
const ATTEMPTS: Document = { $ifNull: ['$attempts', []] };

/**
 * A stage that opens a `running` attempt record; it must follow the stage that starts the run, since it reads
 * the new `attempt` counter. Its run number is one past the last record's (1 for the first run), so numbering
 * goes on when the oldest records are dropped ({@link MAX_ATTEMPTS_KEPT}).
 *
 * @param owner - the node that claimed the task, or `{ fromLease: true }` to read it from the stored lease (a run
 *   started by `markAsStarted`, whose caller names only the token)
 */
export function openAttemptStage(owner: string | { fromLease: true }): Document {
  const record = {
    run: { $add: [{ $ifNull: [{ $arrayElemAt: ['$attempts.run', -1] }, 0] }, 1] },
    attempt: '$attempt',
    node: typeof owner === 'string' ? literal(owner) : '$lease.owner',
    startedAt: '$$NOW',
    endedAt: literal(null),
    outcome: literal('running'),
    error: literal(null),
    checkIns: literal([]),
  };
  return { $set: { attempts: { $slice: [{ $concatArrays: [ATTEMPTS, [record]] }, -MAX_ATTEMPTS_KEPT] } } };
}

/**
 * True for a document whose lease is a started run: `lease.started` true, or absent (a lease written before claims
 * ahead existed always started its run at once). False for a claim ahead whose run has not started.
 */
export const LEASE_STARTED: Document = { $ne: ['$lease.started', false] };

/**
 * The new value of `attempts` that closes the running record with `end`, stamped with the server's now.
 * It reads the state and lease before the write, so it must sit in the stage that changes the state: it closes
 * a record only when the task was Working with its run started (a cancel of an Initialized task, or the end of a
 * claim ahead that never started, records nothing: no record was opened).
 *
 * @param end - the outcome and error of the run
 */
export function closeAttemptExpression(end: AttemptEnd): Document {
  const closed = {
    $map: {
      input: ATTEMPTS,
      in: {
        $cond: [
          { $eq: ['$$this.outcome', 'running'] },
          { $mergeObjects: ['$$this', { endedAt: '$$NOW', outcome: literal(end.outcome), error: literal(end.error) }] },
          '$$this',
        ],
      },
    },
  };
  return { $cond: [{ $and: [{ $eq: ['$state', TaskState.Working] }, LEASE_STARTED] }, closed, ATTEMPTS] };
}

/**
 * The new value of `attempts` that appends a check-in to the running record, unless its last check-in
 * says the same; the latest {@link MAX_CHECK_INS_PER_ATTEMPT} are kept.
 *
 * @param message - the check-in message, already bounded
 */
export function checkInExpression(message: string): Document {
  const checkIns = { $ifNull: ['$$this.checkIns', []] };
  return {
    $map: {
      input: ATTEMPTS,
      in: {
        $cond: [
          { $and: [{ $eq: ['$$this.outcome', 'running'] }, { $ne: [{ $arrayElemAt: ['$$this.checkIns.message', -1] }, literal(message)] }] },
          {
            $mergeObjects: [
              '$$this',
              { checkIns: { $slice: [{ $concatArrays: [checkIns, [{ at: '$$NOW', message: literal(message) }]] }, -MAX_CHECK_INS_PER_ATTEMPT] } },
            ],
          },
          '$$this',
        ],
      },
    },
  };
}

/**
 * The filter of an insert done as an upsert: it never matches an existing document, so the upsert
 * inserts, and a taken id fails on the `_id` index with a duplicate key error instead of overwriting.
 *
 * @param id - the new task's id
 */
export function insertFilter(id: string): Document {
  return { _id: id, state: { $exists: false } };
}

/**
 * The pipeline of an insert: the caller's fields as literals, createdAt from the server's clock.
 *
 * @param task - the normalized task
 * @param ticket - the change ticket of the insert
 */
export function insertPipeline(task: NormalizedNewTask, ticket: ChangeTicket): Document[] {
  return [
    {
      $set: {
        workId: literal(task.workId),
        param: literal(encodeParam(task.param)),
        scheduledAt: literal(task.scheduledAt),
        state: literal(TaskState.Initialized),
        priority: literal(task.priority),
        attempt: literal(0),
        claims: literal(0),
        unstartedClaims: literal(0),
        maxAttempts: literal(task.maxAttempts),
        lease: literal(null),
        lastError: literal(null),
        uniqueKey: literal(task.uniqueKey),
        progress: literal(null),
        kind: literal(task.kind),
        scheduleName: literal(task.scheduleName),
        attempts: literal([]),
        createdAt: '$$NOW',
      },
    },
    finalizeStage(ticket),
  ];
}

/** The filter of a write that needs the task in `state`. */
export function stateFilter(id: string, state: TaskState): Document {
  return { _id: id, state };
}

/** The filter of a write that needs the task Working under `token` (fencing), whether its run started or not. */
export function leaseFilter(id: string, token: string): Document {
  return { _id: id, state: TaskState.Working, 'lease.token': token };
}

/**
 * The filter of a write that ends a run (`markAsDone`, `markAsFailed` with a token): Working under `token` with its
 * run started. `$ne: false` also matches a lease without the field: one written before claims ahead existed,
 * which always started its run at once.
 */
export function startedLeaseFilter(id: string, token: string): Document {
  return { ...leaseFilter(id, token), 'lease.started': { $ne: false } };
}

/**
 * The filter of `markAsStarted`: Working under `token`, claimed ahead, its run not started yet, and its lease not
 * expired by the server's clock (a run never starts on an expired lease: any node may reclaim the task).
 */
export function unstartedLeaseFilter(id: string, token: string): Document {
  return { ...leaseFilter(id, token), 'lease.started': false, $expr: { $gt: ['$lease.until', '$$NOW'] } };
}

/** The filter of a cancel without a token: any non-terminal task. */
export function cancellableFilter(id: string): Document {
  return { _id: id, state: { $in: LIVE_STATES } };
}

/** Due by the server's clock: the only clock that decides, so a node whose clock runs ahead claims nothing early. */
const DUE: Document = { $lte: ['$scheduledAt', '$$NOW'] };

/**
 * The filter of `claim`: the task Initialized, due by the server's clock and, when asked, still due at
 * `ifScheduledAt`. A miss is told apart afterwards by {@link claimRefusalPipeline}.
 *
 * @param id - the task
 * @param ifScheduledAt - the due time the caller saw, or undefined
 */
export function claimFilter(id: string, ifScheduledAt?: Date): Document {
  const filter: Document = { _id: id, state: TaskState.Initialized };
  if (ifScheduledAt !== undefined) filter.scheduledAt = ifScheduledAt;
  filter.$expr = DUE;
  return filter;
}

/**
 * The read that tells why a claim by id matched nothing, in one round trip: the task's state and due time, and
 * `dueInMs`, how long until it is due by the server's clock (`scheduledAt − $$NOW`; ≤ 0 when due). Empty when
 * no task has the id.
 *
 * @param id - the task
 */
export function claimRefusalPipeline(id: string): Document[] {
  return [{ $match: { _id: id } }, { $project: { state: 1, scheduledAt: 1, dueInMs: { $subtract: ['$scheduledAt', '$$NOW'] } } }];
}

/** What {@link claimRefusalPipeline} reads. */
export interface ClaimRefusal {
  /** The task id. */
  _id: string;
  /** Its state. */
  state: TaskState;
  /** When it is due. */
  scheduledAt: Date;
  /** Milliseconds until it is due by the server's clock; ≤ 0 when due. A 64-bit integer the driver reads as a number. */
  dueInMs: number;
}

/**
 * The filter of `claimDue`: Initialized tasks due by the server's clock, of the given works.
 *
 * @param workIds - only these works; undefined for all
 */
export function dueFilter(workIds?: readonly string[]): Document {
  const filter: Document = { state: TaskState.Initialized, $expr: DUE };
  if (workIds !== undefined) filter.workId = { $in: [...workIds] };
  return filter;
}

/**
 * The order of `claimDue` with the default aging: the stored aged key (highest effective priority first), then
 * earliest due, then oldest, then id for a total order. The index `horae_claim_aged` holds it after the state.
 */
export const AGED_DUE_SORT: Document = { claimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 };

/** The order of `claimDue` with `agingMs: Infinity`: priority alone, then as {@link AGED_DUE_SORT}; index `horae_claim_due`. */
export const PRIORITY_DUE_SORT: Document = { priority: -1, scheduledAt: 1, createdAt: 1, _id: 1 };

/**
 * The sort a `claimDue` `findOneAndUpdate` can use for `agingMs`: an index-backed one for the default aging and
 * for `Infinity`; null for any other aging, whose key no document stores (see {@link agedCandidatesPipeline}).
 *
 * @param agingMs - a validated aging (> 0, `Infinity` allowed)
 */
export function claimDueSort(agingMs: number): Document | null {
  if (agingMs === DEFAULT_AGING_MS) return AGED_DUE_SORT;
  if (agingMs === Infinity) return PRIORITY_DUE_SORT;
  return null;
}

/**
 * The aggregation that picks the ids `claimDue` should take next for an aging other than the stored one: it
 * computes the aged key of every due task, sorts them, and keeps the first `limit`. No index serves the computed
 * sort: it reads every due Initialized task of the works (the `state, scheduledAt` index bounds the read to
 * Initialized tasks) and sorts them in memory, keeping only the top `limit` (a top-k sort). Each id is then
 * claimed by its own conditional write, which re-checks that it is still Initialized and due.
 *
 * @param workIds - only these works; undefined for all
 * @param agingMs - a finite aging, > 0
 * @param limit - how many ids to pick
 */
export function agedCandidatesPipeline(workIds: readonly string[] | undefined, agingMs: number, limit: number): Document[] {
  return [
    { $match: dueFilter(workIds) },
    { $set: { agedClaimOrder: claimOrderExpression(agingMs) } },
    { $sort: { agedClaimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 } },
    { $limit: limit },
    { $project: { _id: 1 } },
  ];
}

/** `claims` of a document, or `attempt` for one written before claims were counted apart (each run was a claim). */
const CLAIMS: Document = { $ifNull: ['$claims', '$attempt'] };

/** `unstartedClaims` of a document, or 0 for one written before claims ahead existed. */
const UNSTARTED_CLAIMS: Document = { $ifNull: ['$unstartedClaims', 0] };

/** The fields both kinds of claim set: Working under a new lease ending `leaseMs` after the server's now, one claim more. */
function claimFields(owner: string, token: string, leaseMs: number, started: boolean): Document {
  return {
    state: literal(TaskState.Working),
    claims: { $add: [CLAIMS, 1] },
    lease: { $mergeObjects: [literal({ owner, token, started }), { until: { $add: ['$$NOW', literal(leaseMs)] } }] },
    progress: literal(null),
  };
}

/**
 * The pipeline of a claim by id, which starts the run at once: Initialized → Working under a new lease (started),
 * counting a claim and an attempt, resetting the unstarted claims, and opening the run's `running` record. A new
 * run starts with no progress: what the task reports is its current run's.
 */
export function claimPipeline(owner: string, token: string, leaseMs: number, ticket: ChangeTicket): Document[] {
  return [
    { $set: { ...claimFields(owner, token, leaseMs, true), attempt: { $add: ['$attempt', 1] }, unstartedClaims: literal(0) } },
    openAttemptStage(owner),
    finalizeStage(ticket),
  ];
}

/**
 * The pipeline of `claimDue`, a claim ahead: Initialized → Working under a new lease whose run has not started,
 * counting a claim but no attempt, and opening no record (the run opens one when it starts, with `markAsStarted`).
 */
export function claimAheadPipeline(owner: string, token: string, leaseMs: number, ticket: ChangeTicket): Document[] {
  return [{ $set: { ...claimFields(owner, token, leaseMs, false), unstartedClaims: UNSTARTED_CLAIMS } }, finalizeStage(ticket)];
}

/**
 * The pipeline of `markAsStarted`: the run of a claim ahead starts, counting its attempt, resetting the unstarted
 * claims, marking the lease started (its owner, token and end unchanged) and opening the `running` record (node =
 * the lease owner), as a claim by id does in one step.
 */
export function startPipeline(ticket: ChangeTicket): Document[] {
  return [
    {
      $set: {
        attempt: { $add: ['$attempt', 1] },
        unstartedClaims: literal(0),
        lease: { $mergeObjects: ['$lease', literal({ started: true })] },
        progress: literal(null),
      },
    },
    openAttemptStage({ fromLease: true }),
    finalizeStage(ticket),
  ];
}

/** The pipeline of `renewLease`: the lease now ends `leaseMs` after the server's now. */
export function renewPipeline(leaseMs: number, ticket: ChangeTicket): Document[] {
  // A pipeline $set takes no dotted paths: merge the new end into the lease instead.
  return [{ $set: { lease: { $mergeObjects: ['$lease', { until: { $add: ['$$NOW', literal(leaseMs)] } }] } } }, finalizeStage(ticket)];
}

/**
 * The pipeline of `release`: Working → Initialized due at `runAt`, the lease cleared; the attempt given
 * back (never below 0) when `refundAttempt` and the run had started (a claim ahead spent none); `lastError`
 * replaced when an error is given. The running record closes `retried` with the error when one is given, else
 * `released` (a graceful stop); a claim ahead that never started has none.
 */
export function releasePipeline(runAt: Date, error: TaskError | undefined, refundAttempt: boolean, ticket: ChangeTicket): Document[] {
  const end: AttemptEnd = error === undefined ? { outcome: 'released', error: null } : { outcome: 'retried', error };
  return [
    {
      $set: {
        state: literal(TaskState.Initialized),
        scheduledAt: literal(runAt),
        lease: literal(null),
        // Read from the lease before this stage clears it: every expression of one $set sees the input document.
        attempt: refundAttempt ? { $cond: [LEASE_STARTED, { $max: [0, { $subtract: ['$attempt', 1] }] }, '$attempt'] } : '$attempt',
        lastError: error === undefined ? '$lastError' : literal(error),
        attempts: closeAttemptExpression(end),
      },
    },
    finalizeStage(ticket),
  ];
}

/**
 * The pipeline that ends a task in a terminal state, clearing its lease.
 *
 * @param state - Done, Failed or Cancelled
 * @param error - the new `lastError`; undefined keeps the current one
 * @param end - how the run ended, closing its record when the task was Working with its run started; undefined
 *   records nothing (a task failed before it ever ran)
 */
export function endPipeline(state: TaskState, error: TaskError | undefined, ticket: ChangeTicket, end?: AttemptEnd): Document[] {
  const set: Document = { state: literal(state), lease: literal(null), lastError: error === undefined ? '$lastError' : literal(error) };
  if (end !== undefined) set.attempts = closeAttemptExpression(end);
  return [{ $set: set }, finalizeStage(ticket)];
}

/** The pipeline of `update`: only the fields the patch has, as literals. */
export function patchPipeline(patch: TaskPatch, ticket: ChangeTicket): Document[] {
  const set: Document = {};
  if (patch.scheduledAt !== undefined) set.scheduledAt = literal(patch.scheduledAt);
  if (patch.param !== undefined) set.param = literal(encodeParam(patch.param));
  if (patch.priority !== undefined) set.priority = literal(patch.priority);
  return Object.keys(set).length === 0 ? [finalizeStage(ticket)] : [{ $set: set }, finalizeStage(ticket)];
}

/**
 * The pipeline of `setProgress`: replaces the progress, stamped with the server's now; a message is also
 * a check-in of the running attempt (see {@link checkInExpression}).
 */
export function progressPipeline(progress: { completed: number; total: number; message?: string }, ticket: ChangeTicket): Document[] {
  const given: Document = { completed: progress.completed, total: progress.total };
  if (typeof progress.message === 'string') given.message = progress.message;
  // $mergeObjects replaces the whole sub-document; a plain sub-document in $set would merge into the
  // old progress and keep a stale message.
  const set: Document = { progress: { $mergeObjects: [literal(given), { at: '$$NOW' }] } };
  if (typeof progress.message === 'string') set.attempts = checkInExpression(progress.message);
  return [{ $set: set }, finalizeStage(ticket)];
}

/** The filter of `reclaimExpired`: Working tasks whose lease ended by the server's clock (until ≤ now). */
export function expiredFilter(): Document {
  // The $type guard: a missing date sorts below every date, so a lease without one would count as expired.
  return { state: TaskState.Working, 'lease.until': { $type: 'date' }, $expr: { $lte: ['$lease.until', '$$NOW'] } };
}

/** The lastError a reclaimed task whose run had started carries. */
export const LEASE_EXPIRED_ERROR: TaskError = { message: 'lease expired', code: 'LEASE_EXPIRED' };

/**
 * The message of {@link poisonTaskError} cut around its count, so that the server builds it for the count it
 * computes: `before + n + after`. Taken from the storage package's own function, so the two never drift apart.
 */
export const POISON_MESSAGE_PARTS: readonly [string, string] = (() => {
  const mark = 987_654_321;
  const parts = poisonTaskError(mark).message.split(String(mark));
  if (parts.length !== 2) throw new Error('poisonTaskError no longer names its count once: update POISON_MESSAGE_PARTS');
  return [parts[0]!, parts[1]!];
})();

/**
 * The {@link poisonTaskError} of `count` unstarted claims, built by the server.
 *
 * @param count - an expression of the count (an integer)
 */
export function poisonErrorExpression(count: Document): Document {
  const { message: _message, ...rest } = poisonTaskError(0);
  return {
    $mergeObjects: [literal(rest), { message: { $concat: [literal(POISON_MESSAGE_PARTS[0]), { $toString: { $toInt: count } }, literal(POISON_MESSAGE_PARTS[1])] } }],
  };
}

/**
 * The pipeline of `reclaimExpired`, for both kinds of expired lease, decided per document by `lease.started`:
 *
 * - a started run spent its attempt: back to Initialized due at the server's now, or Failed when the attempts
 *   are spent; its running record closes `lease-expired`, and `lastError` says so;
 * - a claim ahead whose run never started spent nothing: `unstartedClaims` + 1, and back to Initialized due now
 *   (attempt, record and lastError unchanged), or, when that count reaches `maxUnstartedClaims`, Failed with
 *   {@link poisonTaskError} of the count.
 *
 * Either way the lease is cleared, so the old holder's token is refused.
 *
 * @param maxUnstartedClaims - a validated integer ≥ 1
 */
export function reclaimPipeline(maxUnstartedClaims: number, ticket: ChangeTicket): Document[] {
  const unstartedAfter: Document = { $add: [UNSTARTED_CLAIMS, 1] };
  const poisoned: Document = { $gte: [unstartedAfter, literal(maxUnstartedClaims)] };
  return [
    {
      $set: {
        state: {
          $cond: [
            LEASE_STARTED,
            { $cond: [{ $gte: ['$attempt', '$maxAttempts'] }, literal(TaskState.Failed), literal(TaskState.Initialized)] },
            { $cond: [poisoned, literal(TaskState.Failed), literal(TaskState.Initialized)] },
          ],
        },
        unstartedClaims: { $cond: [LEASE_STARTED, UNSTARTED_CLAIMS, unstartedAfter] },
        lastError: { $cond: [LEASE_STARTED, literal(LEASE_EXPIRED_ERROR), { $cond: [poisoned, poisonErrorExpression(unstartedAfter), '$lastError'] }] },
        attempts: closeAttemptExpression({ outcome: 'lease-expired', error: LEASE_EXPIRED_ERROR }),
      },
    },
    {
      $set: {
        scheduledAt: { $cond: [{ $eq: ['$state', TaskState.Initialized] }, '$$NOW', '$scheduledAt'] },
        lease: literal(null),
      },
    },
    finalizeStage(ticket),
  ];
}

/** The pipeline that gives late writes (seq null) a new sequence. */
export function resequencePipeline(ticket: ChangeTicket): Document[] {
  return [{ $set: { seq: sequenceExpression(ticket) } }];
}

/**
 * The filter of a change page: changes after `from`, up to the watermark (no change at or below it can
 * still commit).
 *
 * @param from - the reader's position
 * @param watermark - the highest sequence every writer has finished with
 */
export function changesFilter(from: ChangePosition, watermark: number): Document {
  const after: Document = { seq: { $gt: from.seq, $lte: watermark } };
  return from.id === null ? after : { $or: [{ seq: from.seq, _id: { $gt: from.id } }, after] };
}

/** The order of a change page. */
export const CHANGES_SORT: Document = { seq: 1, _id: 1 };

/**
 * The filter of `listDue`: Initialized tasks due strictly before `before`, after the page position.
 */
export function listDueFilter(before: Date, after: PagePosition | null): Document {
  const filter: Document = { state: TaskState.Initialized, scheduledAt: { $lt: before } };
  if (after !== null) filter.$or = [{ scheduledAt: { $gt: after.at } }, { scheduledAt: after.at, _id: { $gt: after.id } }];
  return filter;
}

/** The order of `listDue`. */
export const LIST_DUE_SORT: Document = { scheduledAt: 1, _id: 1 };

/** The filter of `list`: by state and/or work, after the page position (createdAt, id). */
export function listFilter(options: { state?: TaskState; workId?: string }, after: PagePosition | null): Document {
  const filter: Document = {};
  if (options.state !== undefined) filter.state = options.state;
  if (options.workId !== undefined) filter.workId = options.workId;
  if (after !== null) filter.$or = [{ createdAt: { $gt: after.at } }, { createdAt: after.at, _id: { $gt: after.id } }];
  return filter;
}

/** The order of `list`. */
export const LIST_SORT: Document = { createdAt: 1, _id: 1 };

/** The filter of `deleteTerminalBefore`. */
export function terminalBeforeFilter(before: Date): Document {
  return { state: { $in: TERMINAL_STATES }, updatedAt: { $lt: before } };
}
