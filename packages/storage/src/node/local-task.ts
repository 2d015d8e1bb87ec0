import type { BacklogClaim } from './backlog-claimer.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { StorageTaskHandle } from './storage-task-handle.js';
import type { RunAbort } from './run-abort.js';
import type { LocalPhase, LocalTaskView } from './sync.js';
import type { TaskError, TaskInfo } from '../contract/task-info.js';

/** What this node holds of one task. */
export interface LocalTask extends LocalTaskView {
  readonly taskId: string;
  workId: string;
  readonly handle: StorageTaskHandle;
  /** Bumped whenever the local timer is replaced or dropped: a stale run stops before it claims. */
  generation: number;
  /** The abort of the run under way, when this node runs it. */
  controller: RunAbort | undefined;
  cancelRequested: boolean;
  cancelWritten: boolean;
  /** How the handle settles, when something other than the local run decided it. */
  outcome: { state: 'done' | 'failed' | 'cancelled'; value: unknown } | undefined;
  /** The row as sync last read it while this node's claim was under way: what a lost claim learns from. */
  seen: TaskInfo | undefined;
  /** A batch claim of the backlog, held until the run takes it (or it is handed back). */
  backlog: BacklogClaim | undefined;
  /** When the lease of a batch claim the run took expires at the latest (its keeper's last renewal). */
  keeper: LeaseKeeper | undefined;
  /**
   * The Done write of a run that gave its slot back before the write landed: the handle settles once it has.
   * See `RunPath.finishDone` (run-path.ts).
   */
  ending: Promise<void> | undefined;
}

/**
 * A new local task, with no timer, run nor outcome yet.
 * @param cancel - what its handle's `cancel()` does (the storage's durable cancel of `taskId`)
 */
export function newLocalTask(
  taskId: string,
  workId: string,
  phase: LocalPhase,
  runAt: Date,
  priority: number,
  cancel: (reason?: string) => Promise<boolean>,
): LocalTask {
  return {
    taskId,
    workId,
    phase,
    scheduledAt: runAt.getTime(),
    priority,
    handle: new StorageTaskHandle(taskId, runAt, priority, cancel),
    generation: 0,
    controller: undefined,
    cancelRequested: false,
    cancelWritten: false,
    outcome: undefined,
    seen: undefined,
    ending: undefined,
    backlog: undefined,
    keeper: undefined,
  };
}

/** Rebuilds the error a task stored as `lastError`, for a handle whose task failed on another node. */
export function storedError(error: TaskError | null): Error {
  const out = new Error(error?.message ?? 'the task failed on another node');
  if (error?.name !== undefined) out.name = error.name;
  return out;
}
