import type { LeaseLostError, RepositoryError } from '../contract/errors.js';
import type { TaskInfo } from '../contract/task-info.js';

/** A task was written at schedule time, or restored from the repository by sync. */
export interface TaskScheduledEvent {
  /** The task as stored. */
  task: TaskInfo;
  /**
   * How it came to be held by this node: a new insert, an insert that met a live uniqueKey, a sync restore, or a
   * batch claim of the backlog (`claimed`: the task was due already and this node claimed it to run at once; the
   * `task` is the claimed row, Working under this node's lease).
   */
  source: 'inserted' | 'existing' | 'restored' | 'claimed';
}

/** This node claimed a task and its work starts. */
export interface TaskStartedEvent {
  /** The task as claimed (Working, with this node's lease; `attempt` counts this run). */
  task: TaskInfo;
}

/** A run succeeded and the task is Done. */
export interface TaskSucceededEvent {
  /** The task, Done. */
  task: TaskInfo;
  /** What the work returned. */
  result: unknown;
}

/** A run failed with no retry left: the task is Failed. */
export interface TaskFailedEvent {
  /** The task, Failed. */
  task: TaskInfo;
  /** The run's error. */
  error: unknown;
}

/** A run failed and the task is due again. */
export interface TaskRetriedEvent {
  /** The task, Initialized again. */
  task: TaskInfo;
  /** The run's error. */
  error: unknown;
  /** When the next attempt runs. */
  runAt: Date;
}

/**
 * A task was cancelled (by its handle, by `storage.cancel`, or seen cancelled by sync).
 *
 * Rules of `reporter` — every cancel has exactly one reporting node, when that node is alive:
 * - A cancel this node wrote (`origin: 'local'`) is reported here, unless the task was running on another node
 *   at that moment (its attempt record says so): then that node reports it, as a cancel it saw while running.
 * - A cancel sync saw while this node ran the task (`origin: 'sync'`, the run's signal aborted) is reported here:
 *   this node held the task, whoever wrote the cancel (another node, or an operator writing the repository).
 * - A cancel sync saw of a task not running here is reported only by a single-node storage (no other node could
 *   have written it, so it came from outside); on many nodes, each holding a timer of it, none reports it: a
 *   cancel written by a node was reported by that node, and one written outside any node, of a task no node
 *   was running, has no node that held it alone.
 */
export interface TaskCancelledEvent {
  /** The task's id. */
  taskId: string;
  /** The task as stored, when known. */
  task: TaskInfo | undefined;
  /** `'local'`: this node wrote the cancel; `'sync'`: sync saw a cancel written elsewhere. */
  origin: 'local' | 'sync';
  /** True on the one node that reports this cancel (status hooks report only these); see the rules above. */
  reporter: boolean;
}

/**
 * Sync on this node reclaimed a task whose lease had expired (its node died or stalled): the task went back to
 * Initialized (due now, `attempt` counted), or to Failed when its attempts were spent. Exactly one node reclaims
 * each expired lease, so exactly one node emits this per reclaim.
 */
export interface TaskReclaimedEvent {
  /** The task in its new state: Initialized or Failed. */
  task: TaskInfo;
  /** This node, which reclaimed it. */
  nodeId: string;
}

/** This node lost the lease of a task it was running: the run's signal was aborted, its result is discarded. */
export interface TaskLeaseLostEvent {
  /** The task's id. */
  taskId: string;
  /** Why. */
  error: LeaseLostError;
}

/**
 * A repository call failed with an outage; it is tried again.
 *
 * Rate-limited (the `repositoryErrorIntervalMs` option): the first failure of each operation in an outage is
 * reported at once, later ones of that operation at most once per interval, each report carrying in `suppressed`
 * the failures of that operation since its previous report that were not reported. The fields describe the failure
 * that made the report.
 */
export interface RepositoryErrorEvent {
  /** The repository method (`'markAsDone'`, `'claim'`, `'getUpdatedSince'`, ...). */
  operation: string;
  /** The task concerned, when there is one. */
  taskId: string | undefined;
  /** 1 for the first failure of this call, 2 for the next, and so on. */
  attempt: number;
  /** The error; the driver's error is its `cause`. */
  error: RepositoryError;
  /** How long until the next try, when known. */
  retryInMs: number | undefined;
  /** Failures of this operation since its previous report that were not reported (0 for the first of an outage). */
  suppressed: number;
}

/** A repository call landed after an outage: reported once per outage. */
export interface RepositoryRecoveredEvent {
  /** When the outage's first failure happened. */
  since: Date;
  /** How long the outage lasted, in ms (from its first failure to the call that landed). */
  downMs: number;
  /** Failed tries in the outage, reported or not. */
  failures: number;
  /** How many of them were reported as `repository:error`. */
  reported: number;
}

/** What one sync did. */
export interface SyncReport {
  /**
   * Tasks this node started to hold (restored, inserted by another node, released back), or, when already due,
   * handed to the batch claim of the backlog (which may find another node took them first).
   */
  scheduled: number;
  /** Tasks whose local timer moved because their runAt, param or priority changed elsewhere. */
  rescheduled: number;
  /** Local timers dropped because the task ended, was cancelled or was claimed elsewhere. */
  dropped: number;
  /** Tasks whose lease had expired and that were reclaimed. */
  reclaimed: number;
  /** Tasks whose workId this node does not know (left untouched). */
  unknown: number;
  /** Changed rows read from the repository. */
  changes: number;
}

/** Sync met a task whose workId is not registered on this node: it is left untouched for a node that knows it. */
export interface SyncUnknownWorkEvent {
  /** The task. */
  task: TaskInfo;
}

/** Sync could not apply one changed row (the local scheduler refused it); the other rows were applied. */
export interface SyncErrorEvent {
  /** The row. */
  task: TaskInfo;
  /** What the local scheduler threw. */
  error: unknown;
}

/**
 * A claim was refused because the task's work had as many tasks Working across nodes as its `concurrency`
 * allows: the task stays Initialized (no attempt counted) and this node tries again at `retryAt`.
 */
export interface TaskLimitedEvent {
  /** The task. */
  taskId: string;
  /** Its work. */
  workId: string;
  /** The work's `concurrency`. */
  maxWorking: number;
  /** When this node tries to claim it again. */
  retryAt: Date;
}

/**
 * Works registered with a `concurrency`, while the repository cannot enforce it across nodes (it is not a
 * WorkLimiter): the limit holds per node only. Emitted once, by `start()`.
 */
export interface WorkLimitNodeLocalEvent {
  /** The works whose limit is per node only. */
  workIds: string[];
}

/**
 * The events a storage middleware emits; subscribe with `storage.events.on(name, listener)`.
 *
 * @remarks Listeners run synchronously; a listener that throws does not disturb the scheduler. (A type alias,
 * not an interface, because the core's TypedEventEmitter takes a map that is a `Record<string, unknown>`.)
 */
export type StorageEvents = {
  /** A task was inserted (or found by its uniqueKey) at schedule time, or restored by sync. */
  'task:scheduled': TaskScheduledEvent;
  /** This node claimed a task and its work starts. */
  'task:started': TaskStartedEvent;
  /** A run succeeded; the task is Done. */
  'task:succeeded': TaskSucceededEvent;
  /** A run failed for good; the task is Failed. */
  'task:failed': TaskFailedEvent;
  /** A run failed and was released for a later attempt. */
  'task:retried': TaskRetriedEvent;
  /** A task was cancelled. */
  'task:cancelled': TaskCancelledEvent;
  /** This node reclaimed a task whose lease had expired: Initialized again, or Failed with its attempts spent. */
  'task:reclaimed': TaskReclaimedEvent;
  /** A claim was refused because the work is at its cross-node concurrency limit; the task waits. */
  'task:limited': TaskLimitedEvent;
  /** The repository cannot enforce work limits across nodes: they hold per node only. */
  'work-limit:node-local': WorkLimitNodeLocalEvent;
  /** This node lost the lease of a running task. */
  'task:lease-lost': TaskLeaseLostEvent;
  /** A repository call failed with an outage and is tried again (rate-limited: see RepositoryErrorEvent). */
  'repository:error': RepositoryErrorEvent;
  /** A repository call landed after an outage; once per outage. */
  'repository:recovered': RepositoryRecoveredEvent;
  /** A sync pass finished. */
  'sync:done': SyncReport;
  /** Sync met a workId this node does not know. */
  'sync:unknown-work': SyncUnknownWorkEvent;
  /** Sync could not apply one row; it went on with the others. */
  'sync:error': SyncErrorEvent;
};
