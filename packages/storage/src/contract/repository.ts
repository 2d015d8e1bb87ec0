import type { NewTask, TaskAttempt, TaskError, TaskInfo, TaskPatch, TaskProgress, TaskState } from './task-info.js';
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- referenced from TSDoc
import type { DEFAULT_MAX_UNSTARTED_CLAIMS, MAX_CHECK_INS_PER_ATTEMPT, poisonTaskError } from './task-info.js';
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- referenced from TSDoc
import type { TaskNotDueError, InvalidStateError } from './errors.js';

/** The result of an insert: the task, and whether this call created it (false: a live task held the uniqueKey). */
export interface InsertResult {
  /** The inserted task, or the live task that already held the uniqueKey. */
  task: TaskInfo;
  /** True when this call inserted the row. */
  created: boolean;
}

/** A page of changed tasks and the cursor to pass next time. */
export interface ChangePage {
  /** Tasks changed after the cursor, each once, in the order the database committed their last change. */
  tasks: TaskInfo[];
  /** Pass it to the next call; equal to the one given when nothing changed. Opaque. */
  cursor: string;
}

/** What `claim` and `claimDue` take. */
export interface ClaimOptions {
  /** The claiming node's id. */
  owner: string;
  /** How long the lease lasts before another node may reclaim the task; 0 expires at once. */
  leaseMs: number;
}

/** What `claimDue` takes. */
export interface ClaimDueOptions extends ClaimOptions {
  /** The most tasks to claim (an integer ≥ 1). */
  limit: number;
  /** Only tasks of these works (an empty list claims nothing). */
  workIds?: readonly string[];
  /**
   * The aging of the claim order, as the core Dispatcher's: a due task's effective priority is
   * `priority + waitedMs / agingMs`, where waitedMs is how long it has been due by the database's clock, so no
   * priority starves. `Infinity` orders by priority alone. @defaultValue 10000
   */
  agingMs?: number;
}

/** What `reclaimExpired` takes. */
export interface ReclaimOptions {
  /** The most tasks to reclaim in one call. */
  limit?: number;
  /**
   * A task whose lease expires before its run started for the `maxUnstartedClaims`-th time in a row is failed as
   * a poison task ({@link poisonTaskError}) rather than made Initialized again. An integer ≥ 1.
   * @defaultValue {@link DEFAULT_MAX_UNSTARTED_CLAIMS}
   */
  maxUnstartedClaims?: number;
}

/** What `release` takes. */
export interface ReleaseOptions {
  /** When the task is due again. */
  runAt: Date;
  /** The error of the run, recorded as `lastError` (a retry); leave out to keep the last one. */
  error?: TaskError;
  /**
   * Give the attempt back (a run stopped by a graceful stop does not count). A claim whose run never started
   * spent no attempt: there is nothing to give back. @defaultValue false
   */
  refundAttempt?: boolean;
}

/** Filters and paging for `list`. */
export interface ListOptions {
  /** Only tasks in this state. */
  state?: TaskState;
  /** Only tasks of this work. */
  workId?: string;
  /** Page size. @defaultValue 100 */
  limit?: number;
  /** The `next` of the previous page. */
  after?: string | null;
}

/** A page of `list`. */
export interface ListPage {
  /** Tasks ordered by createdAt, then id. */
  tasks: TaskInfo[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
}

/**
 * Where tasks live: the contract every adapter implements and the conformance suite of
 * `@horae/storage/testing` checks.
 *
 * Every transition is one conditional write: the repository, not the node, decides who wins. Done,
 * Cancelled and Failed are terminal: no method changes a terminal task. Times the repository sets
 * (createdAt, updatedAt, lease.until) come from the database's clock. Driver failures are thrown as
 * RepositoryError with the driver's error as `cause`; bad input as InvalidInputError, with nothing written.
 *
 * Errors are sorted by whether a retry can succeed: RepositoryError only for an outage (the storage layer retries
 * it until the write lands); a value the database refuses for good (a key over an index's limit, a value it cannot
 * hold) as ValueRefusedError, an InvalidInputError that is never retried. Every write checks the key limits
 * (`MAX_TASK_ID_LENGTH`, `MAX_WORK_ID_LENGTH`, `MAX_UNIQUE_KEY_LENGTH`, `MAX_NODE_ID_LENGTH`,
 * `MAX_SCHEDULE_NAME_LENGTH`) and its param bound before it writes anything.
 */
export interface Repository {
  /**
   * The most bytes of UTF-8 JSON a param may take in this repository (its `maxParamBytes` option; 1 MiB unless set).
   * A caller may check a param against it before it calls, to refuse an oversized one early; the repository checks
   * it on every write anyway. Left out by a repository that does not say.
   */
  readonly maxParamBytes?: number;

  /**
   * Inserts a task in state Initialized with attempt 0.
   *
   * Rule: while a non-terminal task holds `uniqueKey`, inserting another with the same key inserts nothing
   * and returns that task with `created: false`; of concurrent inserts with one key, exactly one creates.
   *
   * @throws InvalidInputError when the param is not JSON, a date is invalid, or the id is taken; nothing is written
   */
  insert(task: NewTask): Promise<InsertResult>;

  /**
   * Inserts many tasks in one write (one transaction where the database has them).
   *
   * Rule: the results are in input order; each follows the rule of {@link Repository.insert}; when any input
   * is invalid, nothing is written.
   */
  insertMany(tasks: readonly NewTask[]): Promise<InsertResult[]>;

  /** Reads one task. @throws TaskNotFoundError when no task has the id */
  getById(id: string): Promise<TaskInfo>;

  /**
   * Reads the tasks changed after `cursor` (null: from the start), at most `limit`, and the next cursor.
   *
   * Rule: a reader that pages from null until a page comes back empty sees every committed change of
   * every task at least once in its latest state: no row is skipped when many share one timestamp, when
   * writes interleave with paging, or (where the database has concurrent transactions) when a later
   * change commits before an earlier one. Ordering comes from the database, never from nodes' clocks.
   */
  getUpdatedSince(cursor: string | null, limit: number): Promise<ChangePage>;

  /**
   * A cursor at the current end of the change log, for a reader that has just loaded the state some other
   * way (a restore) and wants only what changes from now on.
   *
   * Rule: every change that commits after this call returns is seen by getUpdatedSince from this cursor;
   * changes from before it may be seen again (at least once, never lost).
   */
  getCursor(): Promise<string>;

  /**
   * Lists Initialized tasks due before `before` (exclusive), ordered by scheduledAt, then id: how sync loads
   * the window of tasks it holds in memory.
   */
  listDue(options: { before: Date; limit: number; after?: string | null }): Promise<ListPage>;

  /**
   * Initialized → Working, and the run starts at once: takes a lease for `owner` (`lease.started` true), sets a
   * new token, counts a claim (`claims` + 1) and an attempt, resets `unstartedClaims`, and clears the progress of
   * any earlier run (the new run reports its own). How a node claims a task whose own timer fired.
   *
   * Rules: of concurrent claims of one Initialized task exactly one returns the task; the others, and any claim of
   * a task that is not Initialized, return null. A claim made with `ifScheduledAt` returns null when the stored due
   * time differs (the task was rescheduled). "Due" is judged by the database's clock, never the caller's: a claim
   * of an Initialized task (with a matching `ifScheduledAt`) that is not due yet throws {@link TaskNotDueError}
   * and writes nothing.
   *
   * @throws TaskNotFoundError when no task has the id
   * @throws TaskNotDueError when the task is not due yet by the database's clock; nothing is written
   */
  claim(id: string, options: ClaimOptions & { ifScheduledAt?: Date }): Promise<TaskInfo | null>;

  /**
   * Claims ahead: up to `limit` Initialized tasks due by the database's clock go to Working under a lease for
   * `owner` whose run has not started (`lease.started` false): each counts a claim (`claims` + 1) but no attempt,
   * and opens no attempt record. The run starts with {@link Repository.markAsStarted}; a claim handed back with
   * `release` costs nothing; a claim whose lease expires unstarted counts in `unstartedClaims`.
   *
   * Order: highest effective priority first, aged as the core Dispatcher ages it (`priority + waitedMs / agingMs`,
   * waitedMs by the database's clock), then earliest due, then oldest, then id.
   *
   * Rule: no task is returned to two concurrent callers.
   *
   * @throws InvalidInputError on a bad owner, leaseMs, limit or agingMs; nothing is written
   */
  claimDue(options: ClaimDueOptions): Promise<TaskInfo[]>;

  /**
   * Starts the run of a claim made ahead by `claimDue`: counts the attempt (`attempt` + 1), resets
   * `unstartedClaims`, sets `lease.started`, and opens the `running` attempt record (node = lease owner), in one
   * write. A claim already started is returned unchanged (a retried write that had landed).
   *
   * Rule: calls made together (many runs starting in one tick) may be written in one statement, and each is
   * fenced on its own: a call whose token no longer holds its task is refused and the others land.
   *
   * Rule: a run never starts on an expired lease. A claim ahead whose lease ran out (`lease.until` ≤ now by the
   * database's clock) is refused with LeaseLostError and nothing is written, even though no other node has reclaimed
   * it yet: any node may reclaim it at any moment, and a run started now would overlap the next owner's.
   *
   * @throws LeaseLostError when the task is not Working under this token, or its unstarted lease has expired
   * @throws TaskNotFoundError when no task has the id
   */
  markAsStarted(id: string, token: string): Promise<TaskInfo>;

  /**
   * Extends the lease of a Working task held with `token` to now + `leaseMs`.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  renewLease(id: string, token: string, leaseMs: number): Promise<TaskInfo>;

  /**
   * Working → Initialized, due at `runAt`: a retry, or a run handed back at a graceful stop.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  release(id: string, token: string, options: ReleaseOptions): Promise<TaskInfo>;

  /**
   * Working → Done.
   *
   * Rules: succeeds only while the task is Working under `token` and its run has started; a zombie whose lease
   * was reclaimed is refused, so its result is discarded. Calls made together (many runs ending in one tick) may
   * be written in one statement, and each is fenced on its own: a refused call does not refuse the others.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws InvalidStateError when the task is Working under this token but its run has not started
   * @throws TaskNotFoundError when no task has the id
   */
  markAsDone(id: string, token: string): Promise<TaskInfo>;

  /**
   * Working → Failed under `token`, or Initialized → Failed without one (a task that can never run).
   *
   * Rule: with a token, as {@link Repository.markAsDone}: the run must have started, and calls made together may be
   * written in one statement, each fenced on its own.
   *
   * @throws LeaseLostError when a token is given and the task is not Working under it
   * @throws InvalidStateError when no token is given and the task is not Initialized, or a token is given and the
   * run of its claim has not started
   * @throws TaskNotFoundError when no task has the id
   */
  markAsFailed(id: string, error: TaskError, token?: string): Promise<TaskInfo>;

  /**
   * Initialized or Working → Cancelled. Without a token any node or operator may cancel; with one, only
   * the holder of the lease may (a run that cancels itself).
   *
   * Rule: of concurrent cancels exactly one returns `cancelled: true`; a task already terminal is returned
   * unchanged with `cancelled: false`.
   *
   * @throws LeaseLostError when a token is given and the task is not Working under it
   * @throws TaskNotFoundError when no task has the id
   */
  markAsCancelled(id: string, options?: { token?: string; reason?: string }): Promise<{ task: TaskInfo; cancelled: boolean }>;

  /**
   * Changes the due time, param or priority of an Initialized task.
   *
   * @throws InvalidStateError when the task is not Initialized
   * @throws InvalidInputError on a bad patch; nothing is written
   * @throws TaskNotFoundError when no task has the id
   */
  update(id: string, patch: TaskPatch): Promise<TaskInfo>;

  /**
   * Records the progress of a Working task held with `token`. When `progress.message` is set and differs
   * from the last check-in of the running attempt, it is also appended to that attempt's check-ins (the
   * latest {@link MAX_CHECK_INS_PER_ATTEMPT} are kept).
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  setProgress(id: string, token: string, progress: Omit<TaskProgress, 'at'>): Promise<void>;

  /**
   * Working tasks whose lease expired by the database's clock go back to Initialized (due now), or to
   * Failed when their attempts are spent; their lease is cleared, so the old holder's token is refused.
   *
   * A task whose run had started spent its attempt (its record closes `lease-expired`). A task claimed ahead whose
   * run never started spent none: it goes back to Initialized with `unstartedClaims` + 1 (no record, none was
   * opened), or, when that reaches `maxUnstartedClaims`, to Failed with {@link poisonTaskError} as its error.
   *
   * Rule: each expired task is reclaimed by exactly one concurrent caller.
   *
   * @returns the reclaimed tasks, in their new state
   * @throws InvalidInputError on a bad limit or maxUnstartedClaims; nothing is written
   */
  reclaimExpired(options?: ReclaimOptions): Promise<TaskInfo[]>;

  /** Lists tasks, by state and/or workId, in pages. */
  list(options?: ListOptions): Promise<ListPage>;

  /** Counts tasks by state; every state is present. */
  countByState(): Promise<Record<TaskState, number>>;

  /**
   * The execution history of a task: one record per run, oldest first.
   *
   * Rule: each record is written in the same write as the transition it records: a run's start (`claim`, or
   * `markAsStarted` after `claimDue`) opens a `running` record (node = lease owner), and a claim ahead whose run
   * never started has none; markAsDone closes it `succeeded`; markAsFailed out of
   * Working closes it `failed` with the error; release closes it `retried` (with the error) when an error is
   * given, else `released`; markAsCancelled out of Working closes it `cancelled`; reclaimExpired closes it
   * `lease-expired`. A transition that is refused writes no record.
   *
   * @throws TaskNotFoundError when no task has the id
   */
  listAttempts(taskId: string): Promise<TaskAttempt[]>;

  /** Deletes Done, Cancelled and Failed tasks last updated before `before`, with their attempt records. @returns how many tasks were deleted */
  deleteTerminalBefore(before: Date): Promise<number>;

  /** Releases what the repository opened itself (a connection it created); a given connection stays open. */
  close(): Promise<void>;
}

/** Why a {@link TaskChangeNotice} was sent. */
export type TaskChangeReason = 'inserted' | 'updated' | 'cancelled' | 'released';

/** A hint that a task changed on another client: the receiver syncs to read what changed. */
export interface TaskChangeNotice {
  /** The task that changed. */
  taskId: string;
  /** What happened to it. */
  reason: TaskChangeReason;
}

/**
 * An optional capability of a repository whose database can push changes (PostgreSQL LISTEN/NOTIFY), so
 * that a task inserted on node A and due now starts on node B in milliseconds rather than at the next sync.
 *
 * Rule: notices are hints, never the source of truth: a lost notice delays a change until the next sync,
 * it never loses it.
 */
export interface ChangeNotifier {
  /**
   * Calls `listener` for every change committed by any client (this one included) after the subscription
   * is established.
   *
   * @returns a function that ends the subscription
   */
  subscribeChanges(listener: (notice: TaskChangeNotice) => void): Promise<() => Promise<void>>;
}

/** True when `repository` implements {@link ChangeNotifier}. */
export function isChangeNotifier(repository: Repository): repository is Repository & ChangeNotifier {
  return typeof (repository as Partial<ChangeNotifier>).subscribeChanges === 'function';
}

/**
 * What {@link WorkLimiter.claimWithinLimit} returns: the claimed task; `{ refused: 'limit' }` when the task was
 * claimable but its work already had `maxWorking` tasks Working (nothing was written); or null, as
 * {@link Repository.claim} returns it, when the task was not Initialized or its due time differed.
 */
export type LimitedClaim = { task: TaskInfo } | { refused: 'limit' } | null;

/** What {@link WorkLimiter.claimWithinLimit} takes: a claim, and the most tasks of the work that may be Working. */
export interface LimitedClaimOptions extends ClaimOptions {
  /** Returns null when the stored due time differs (the task was rescheduled), as with {@link Repository.claim}. */
  ifScheduledAt?: Date;
  /** The most tasks of this task's workId that may be Working at once, across every client; an integer ≥ 1. */
  maxWorking: number;
}

/** What {@link WorkLimiter.claimDueWithinLimits} takes. */
export interface LimitedClaimDueOptions extends ClaimDueOptions {
  /** Per workId, the most tasks of that work that may be Working at once (integers ≥ 1); works not named are unlimited. */
  workLimits: Readonly<Record<string, number>>;
}

/**
 * An optional capability of a repository that can cap how many tasks of one work are Working at once across
 * every node (a per-workId concurrency limit), because it can count and claim in one atomic step. SQLite
 * (`BEGIN IMMEDIATE`), PostgreSQL (an advisory lock per work) and the memory repository have it; MongoDB does
 * not (a count and a claim of another document cannot be made atomic without a transaction), so there the
 * limit is only node-local.
 *
 * Rules:
 * - A limit binds only the claims that carry it: {@link Repository.claim} and {@link Repository.claimDue} do
 *   not check it, but the tasks they claim count against it. Give every claimer of a work the same limit.
 * - A Working task counts until it leaves Working (Done, Failed, Cancelled, released, or its expired lease
 *   reclaimed): a task whose lease expired still holds its slot until `reclaimExpired` takes it back.
 * - The count and the claim are one atomic step: however many clients claim tasks of one work concurrently,
 *   each with `maxWorking: n`, at most n of those tasks are Working at any moment (when none was claimed
 *   without the limit).
 */
export interface WorkLimiter {
  /**
   * Initialized → Working, as {@link Repository.claim}, only when fewer than `maxWorking` tasks with the same
   * workId are Working; the count and the claim are one atomic step.
   *
   * Rules: a task that is not Initialized (or whose due time differs from `ifScheduledAt`) returns null, whatever
   * the count; a claimable task of a work at its limit returns `{ refused: 'limit' }` and nothing is written (no
   * attempt counted, no history record); otherwise `{ task }`, started as by `claim`. A claimable task not due yet
   * by the database's clock throws {@link TaskNotDueError}, as `claim` does. Of concurrent claims of one task
   * exactly one returns `{ task }`.
   *
   * @param id - the task
   * @param options - owner, leaseMs, optional ifScheduledAt, and maxWorking
   * @returns the claimed task, a refusal for the limit, or null
   * @throws TaskNotFoundError when no task has the id
   * @throws InvalidInputError on a bad owner, leaseMs, date or maxWorking; nothing is written
   */
  claimWithinLimit(id: string, options: LimitedClaimOptions): Promise<LimitedClaim>;

  /**
   * {@link Repository.claimDue} under per-work limits: claims ahead (unstarted, as claimDue) up to `limit` due
   * tasks in claim order (aged), skipping the tasks of works that have no free slot left.
   *
   * Rules: never returns more tasks of a work named in `workLimits` than its free slots (its limit minus its
   * Working tasks, counted atomically with the claim); no task is returned to two concurrent callers. It may
   * return fewer than `limit` tasks while more are due (it stops after a bounded number of passes).
   *
   * @param options - owner, leaseMs, limit, optional workIds, and workLimits
   * @returns the claimed tasks, in claim order
   * @throws InvalidInputError on a bad owner, leaseMs, limit or work limit; nothing is written
   */
  claimDueWithinLimits(options: LimitedClaimDueOptions): Promise<TaskInfo[]>;
}

/** True when `repository` implements {@link WorkLimiter}. */
export function isWorkLimiter(repository: Repository): repository is Repository & WorkLimiter {
  const candidate = repository as Partial<WorkLimiter>;
  return typeof candidate.claimWithinLimit === 'function' && typeof candidate.claimDueWithinLimits === 'function';
}
