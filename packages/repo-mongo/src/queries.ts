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
import { MAX_CHECK_INS_PER_ATTEMPT, TaskState } from '@horae/storage';
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
 * The last stage of every write: recomputes `live` from the state, stamps `updatedAt` from the server's
 * clock, and the change sequence, or null when the write runs past its ticket's deadline.
 *
 * @param ticket - the ticket of this write
 */
export function finalizeStage(ticket: ChangeTicket): Document {
  return {
    $set: {
      live: { $in: ['$state', LIVE_STATES] },
      updatedAt: '$$NOW',
      seq: sequenceExpression(ticket),
    },
  };
}

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
 * A stage that opens a `running` attempt record; it must follow the stage of the claim, since it reads the
 * new `attempt` counter. Its run number is one past the last record's (1 for the first run), so numbering
 * goes on when the oldest records are dropped ({@link MAX_ATTEMPTS_KEPT}).
 *
 * @param owner - the node that claimed the task
 */
export function openAttemptStage(owner: string): Document {
  const record = {
    run: { $add: [{ $ifNull: [{ $arrayElemAt: ['$attempts.run', -1] }, 0] }, 1] },
    attempt: '$attempt',
    node: literal(owner),
    startedAt: '$$NOW',
    endedAt: literal(null),
    outcome: literal('running'),
    error: literal(null),
    checkIns: literal([]),
  };
  return { $set: { attempts: { $slice: [{ $concatArrays: [ATTEMPTS, [record]] }, -MAX_ATTEMPTS_KEPT] } } };
}

/**
 * The new value of `attempts` that closes the running record with `end`, stamped with the server's now.
 * It reads the state before the write, so it must sit in the stage that changes the state: it closes a
 * record only when the task was Working (a cancel of an Initialized task records nothing).
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
  return { $cond: [{ $eq: ['$state', TaskState.Working] }, closed, ATTEMPTS] };
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

/** The filter of a write that needs the task Working under `token` (fencing). */
export function leaseFilter(id: string, token: string): Document {
  return { _id: id, state: TaskState.Working, 'lease.token': token };
}

/** The filter of a cancel without a token: any non-terminal task. */
export function cancellableFilter(id: string): Document {
  return { _id: id, state: { $in: LIVE_STATES } };
}

/**
 * The filter of `claim`: the task Initialized and, when asked, still due at `ifScheduledAt`.
 *
 * @param id - the task
 * @param ifScheduledAt - the due time the caller saw, or undefined
 */
export function claimFilter(id: string, ifScheduledAt?: Date): Document {
  const filter: Document = { _id: id, state: TaskState.Initialized };
  if (ifScheduledAt !== undefined) filter.scheduledAt = ifScheduledAt;
  return filter;
}

/**
 * The filter of `claimDue`: Initialized tasks due by the server's clock, of the given works.
 *
 * @param workIds - only these works; undefined for all
 */
export function dueFilter(workIds?: readonly string[]): Document {
  const filter: Document = { state: TaskState.Initialized, $expr: { $lte: ['$scheduledAt', '$$NOW'] } };
  if (workIds !== undefined) filter.workId = { $in: [...workIds] };
  return filter;
}

/** The order of `claimDue`: highest priority, then earliest due, then oldest, then id for a total order. */
export const DUE_SORT: Document = { priority: -1, scheduledAt: 1, createdAt: 1, _id: 1 };

/**
 * The pipeline of a claim: Initialized → Working under a new lease that ends `leaseMs` after the server's
 * now, counting an attempt and opening its `running` record. A new run starts with no progress: what the
 * task reports is its current run's.
 */
export function claimPipeline(owner: string, token: string, leaseMs: number, ticket: ChangeTicket): Document[] {
  return [
    {
      $set: {
        state: literal(TaskState.Working),
        attempt: { $add: ['$attempt', 1] },
        lease: { $mergeObjects: [literal({ owner, token }), { until: { $add: ['$$NOW', literal(leaseMs)] } }] },
        progress: literal(null),
      },
    },
    openAttemptStage(owner),
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
 * back (never below 0) when `refundAttempt`; `lastError` replaced when an error is given. The running
 * record closes `retried` with the error when one is given, else `released` (a graceful stop).
 */
export function releasePipeline(runAt: Date, error: TaskError | undefined, refundAttempt: boolean, ticket: ChangeTicket): Document[] {
  const end: AttemptEnd = error === undefined ? { outcome: 'released', error: null } : { outcome: 'retried', error };
  return [
    {
      $set: {
        state: literal(TaskState.Initialized),
        scheduledAt: literal(runAt),
        lease: literal(null),
        attempt: refundAttempt ? { $max: [0, { $subtract: ['$attempt', 1] }] } : '$attempt',
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
 * @param end - how the run ended, closing its record when the task was Working; undefined records nothing
 *   (a task failed before it ever ran)
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

/** The lastError a reclaimed task carries. */
export const LEASE_EXPIRED_ERROR: TaskError = { message: 'lease expired', code: 'LEASE_EXPIRED' };

/**
 * The pipeline of `reclaimExpired`: back to Initialized due at the server's now, or Failed when the attempts
 * are spent; the lease cleared so the old holder's token is refused; the running record closed
 * `lease-expired`.
 */
export function reclaimPipeline(ticket: ChangeTicket): Document[] {
  return [
    {
      $set: {
        state: { $cond: [{ $gte: ['$attempt', '$maxAttempts'] }, literal(TaskState.Failed), literal(TaskState.Initialized)] },
        attempts: closeAttemptExpression({ outcome: 'lease-expired', error: LEASE_EXPIRED_ERROR }),
      },
    },
    {
      $set: {
        scheduledAt: { $cond: [{ $eq: ['$state', TaskState.Initialized] }, '$$NOW', '$scheduledAt'] },
        lease: literal(null),
        lastError: literal(LEASE_EXPIRED_ERROR),
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
