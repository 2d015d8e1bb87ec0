/**
 * The durable record of a task, and its states. See the concepts guide for the state diagram.
 */

/** The five states of a task. Done, Cancelled and Failed are terminal: no repository ever changes them. */
export const TaskState = {
  Initialized: 'Initialized',
  Working: 'Working',
  Done: 'Done',
  Cancelled: 'Cancelled',
  Failed: 'Failed',
} as const;

/** One of the five states. */
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/** Every state, in lifecycle order. */
export const ALL_TASK_STATES: readonly TaskState[] = ['Initialized', 'Working', 'Done', 'Cancelled', 'Failed'];

/** True for Done, Cancelled and Failed. */
export function isTerminal(state: TaskState): boolean {
  return state === 'Done' || state === 'Cancelled' || state === 'Failed';
}

/** A JSON value, as stored in `param`. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Who holds a Working task, until when, and the token that fences its writes. */
export interface Lease {
  /** The node id of the holder. */
  owner: string;
  /** When the lease expires (database clock). */
  until: Date;
  /** A random token, new at every claim; the writes that end the run must carry it. */
  token: string;
  /**
   * Whether the run of this claim has started (its attempt is counted). A claim by id starts at once; a claim
   * ahead (`claimDue`) starts with `markAsStarted`, when a run slot takes it.
   */
  started: boolean;
}

/** An error as stored on a task: bounded in size. */
export interface TaskError {
  /** The error's message. */
  message: string;
  /** Its class name. */
  name?: string;
  /** Its code, when it has one. */
  code?: string;
  /** Its stack, cut to a bounded length. */
  stack?: string;
}

/** The last progress and check-in a run reported. */
export interface TaskProgress {
  /** Units done. */
  completed: number;
  /** Units in all. */
  total: number;
  /** The last check-in message, if any. */
  message?: string;
  /** When it was reported. */
  at: Date;
}

/** The durable record of a task. */
export interface TaskInfo {
  /** A uuid. */
  id: string;
  /** The id of the registered work that runs it. */
  workId: string;
  /** The param, as JSON. */
  param: JsonValue;
  /** When it is due. */
  scheduledAt: Date;
  /** Where it is in its lifecycle. */
  state: TaskState;
  /** Higher runs first when slots are scarce. */
  priority: number;
  /**
   * Runs started so far. A run counts when it starts (`claim`, or `markAsStarted` after `claimDue`), never for a
   * claim whose run did not start: a node that dies holding tasks claimed ahead spends none of their attempts.
   */
  attempt: number;
  /**
   * How many times the task was claimed, in all: it only grows (a release, a reclaim or a refund never lowers it).
   * It is the claim's fencing token: a downstream system that keeps the highest value it saw can refuse a write
   * made under an older claim (a random lease token cannot be compared).
   */
  claims: number;
  /**
   * Claims in a row whose lease expired before their run started (the node died holding the task claimed ahead).
   * Reset to 0 when a run starts. At `maxUnstartedClaims`, `reclaimExpired` fails the task as a poison task
   * ({@link poisonTaskError}).
   */
  unstartedClaims: number;
  /** Runs allowed in all; when `attempt` reaches it, a failure is final. */
  maxAttempts: number;
  /** Set while Working. */
  lease: Lease | null;
  /** The error of the last failed run. */
  lastError: TaskError | null;
  /** While the task is not terminal, no other task holds this key. */
  uniqueKey: string | null;
  /** The last progress its run reported. */
  progress: TaskProgress | null;
  /** When it was inserted (database clock). */
  createdAt: Date;
  /** When it last changed (database clock). */
  updatedAt: Date;
  /** How it was scheduled: to run now, at or after a time, or as an occurrence of a recurring schedule. */
  kind: TaskKind;
  /** The recurring schedule this task is an occurrence of, or null. */
  scheduleName: string | null;
}

/**
 * How a task was scheduled (Harbor's job kinds): `immediate` (run now), `scheduled` (run at or after a time),
 * or `periodic` (an occurrence of a recurring schedule).
 */
export type TaskKind = 'immediate' | 'scheduled' | 'periodic';

/** Every task kind. */
export const ALL_TASK_KINDS: readonly TaskKind[] = ['immediate', 'scheduled', 'periodic'];

/** The most unstarted claims in a row before `reclaimExpired` fails a task as a poison task, unless told otherwise. */
export const DEFAULT_MAX_UNSTARTED_CLAIMS = 3;

/**
 * The error `reclaimExpired` stores on a task it fails as a poison task: claimed `claims` times in a row by nodes
 * whose lease expired before the run started (each died, or stalled, holding it). Code `POISON_TASK`.
 */
export function poisonTaskError(unstartedClaims: number): TaskError {
  return {
    name: 'PoisonTaskError',
    code: 'POISON_TASK',
    message: `the task was claimed ${unstartedClaims} times in a row by nodes whose lease expired before its run started; failed as a poison task`,
  };
}

/** How one run of a task ended, or `running` while it runs. */
export type AttemptOutcome = 'running' | 'succeeded' | 'failed' | 'retried' | 'released' | 'cancelled' | 'lease-expired';

/** A check-in message a run made, with the time it was stored. */
export interface CheckIn {
  /** When it was stored (database clock). */
  at: Date;
  /** What the work said. */
  message: string;
}

/** The most check-ins one attempt keeps: the latest ones. */
export const MAX_CHECK_INS_PER_ATTEMPT = 50;

/**
 * The record of one run of a task (execution history): which node ran it, when, how it ended, and the
 * check-ins it made. A repository writes it in the same write as the transition it records.
 */
export interface TaskAttempt {
  /** The task. */
  taskId: string;
  /** 1 for the first run of the task, 2 for the next, and so on: every run counts, also one given back at a graceful stop. */
  run: number;
  /** The task's `attempt` counter during this run. */
  attempt: number;
  /** The node that ran it (the lease owner). */
  node: string;
  /** When the run started (database clock): the claim by id, or `markAsStarted` after a claim ahead. */
  startedAt: Date;
  /** When it ended (database clock), null while running. */
  endedAt: Date | null;
  /** How it ended. */
  outcome: AttemptOutcome;
  /** The error it ended with (failed, retried, lease-expired), bounded in size. */
  error: TaskError | null;
  /** Its check-ins, oldest first, at most {@link MAX_CHECK_INS_PER_ATTEMPT} (the latest). */
  checkIns: CheckIn[];
}

/** What `insert` takes: the fields a caller chooses; the repository sets the rest. */
export interface NewTask {
  /** A uuid; generated when left out. */
  id?: string;
  /** The registered work. */
  workId: string;
  /** The param; must be JSON (no functions, no cycles, no undefined inside, no NaN). */
  param?: JsonValue;
  /** When it is due. */
  scheduledAt: Date;
  /** @defaultValue 0 */
  priority?: number;
  /** @defaultValue 1 */
  maxAttempts?: number;
  /** @defaultValue null */
  uniqueKey?: string | null;
  /** @defaultValue `'periodic'` when `scheduleName` is set, else `'scheduled'` */
  kind?: TaskKind;
  /** The recurring schedule this task is an occurrence of. @defaultValue null */
  scheduleName?: string | null;
}

/** The fields `update` may change on an Initialized task. */
export interface TaskPatch {
  /** A new due time. */
  scheduledAt?: Date;
  /** A new param (JSON). */
  param?: JsonValue;
  /** A new priority. */
  priority?: number;
}
