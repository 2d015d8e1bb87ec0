/**
 * How a task is stored in MongoDB, and the mapping between a stored document and a {@link TaskInfo}.
 */
import { RepositoryError, MAX_ERROR_MESSAGE_LENGTH, MAX_ERROR_STACK_LENGTH, MAX_ERROR_NAME_LENGTH } from '@horae/storage';
import type { AttemptOutcome, CheckIn, JsonValue, Lease, TaskAttempt, TaskError, TaskInfo, TaskKind, TaskProgress } from '@horae/storage';

/**
 * A task as stored: the fields of {@link TaskInfo} under the same names, but for these. `_id` is the task id.
 * `param` is kept as a JSON string, so keys that start with `$` or contain `.` are stored and returned intact and
 * no user value is ever read as an operator. `kind`, `scheduleName`, `claims`, `unstartedClaims` and
 * `lease.started` may be absent on a document an older version wrote (below). The times the adapter sets
 * (`createdAt`, `updatedAt`, `lease.until`) come from the server's `$$NOW`.
 */
export interface TaskDocument extends Omit<TaskInfo, 'id' | 'param' | 'kind' | 'scheduleName' | 'claims' | 'unstartedClaims' | 'lease'> {
  /** The task id. */
  _id: string;
  /** The param, encoded by {@link encodeParam}. */
  param: string;
  /** True while the task is not terminal: the live uniqueKey index covers only these documents. */
  live: boolean;
  /** The change sequence of the last write; null while a late write waits to be sequenced again. */
  seq: number | null;
  /** See {@link TaskInfo.kind}; absent on a document written before schema version 2 (read as `scheduled`). */
  kind?: TaskKind;
  /** See {@link TaskInfo.scheduleName}; absent on a document written before schema version 2 (read as null). */
  scheduleName?: string | null;
  /**
   * See {@link TaskInfo.claims}; absent on a document written before schema version 3, when every claim started a
   * run (read as `attempt`).
   */
  claims?: number;
  /** See {@link TaskInfo.unstartedClaims}; absent on a document written before schema version 3 (read as 0). */
  unstartedClaims?: number;
  /** See {@link TaskInfo.lease}. */
  lease: LeaseDocument | null;
  /**
   * The aged claim key `priority × 10000 − scheduledAt` (ms since the epoch), recomputed by every write and indexed
   * with the state, so that `claimDue` with the default aging walks an index in claim order. Absent on a document
   * an older version wrote until the schema version 3 migration (or a later write) sets it. Never read back.
   */
  claimOrder?: number;
  /**
   * The execution history, oldest first, embedded so that each record is written by the same
   * `findOneAndUpdate` as the transition it records. Task reads leave it out (a projection); only
   * `listAttempts` reads it. Absent on a document written before schema version 2 (read as empty).
   */
  attempts?: AttemptDocument[];
}

/** A lease as stored: `started` is absent on a lease written before schema version 3 (read as true: it started its run at once). */
export interface LeaseDocument extends Omit<Lease, 'started'> {
  /** See {@link Lease.started}. */
  started?: boolean;
}

/** One run of a task as embedded in its document: a {@link TaskAttempt} without the task id. */
export interface AttemptDocument {
  /** See {@link TaskAttempt.run}. */
  run: number;
  /** See {@link TaskAttempt.attempt}. */
  attempt: number;
  /** See {@link TaskAttempt.node}. */
  node: string;
  /** See {@link TaskAttempt.startedAt}; set from the server's `$$NOW`. */
  startedAt: Date;
  /** See {@link TaskAttempt.endedAt}; set from the server's `$$NOW`. */
  endedAt: Date | null;
  /** See {@link TaskAttempt.outcome}. */
  outcome: AttemptOutcome;
  /** See {@link TaskAttempt.error}. */
  error: TaskError | null;
  /** See {@link TaskAttempt.checkIns}; each `at` set from the server's `$$NOW`. */
  checkIns: CheckIn[];
}

/**
 * Encodes a param for storage: a JSON string, so that any key (`$where`, `a.b`) round-trips intact.
 *
 * @param param - a JSON value, already checked by `assertJsonValue`
 * @returns its JSON text
 */
export function encodeParam(param: JsonValue): string {
  return JSON.stringify(param);
}

/**
 * Decodes a stored param.
 *
 * @param stored - what {@link encodeParam} returned
 * @returns the JSON value
 * @throws RepositoryError when the stored text is not JSON (the document was edited by hand)
 */
export function decodeParam(stored: unknown): JsonValue {
  if (typeof stored !== 'string') throw new RepositoryError(`a stored param is a ${typeof stored}, not the JSON text Horae writes`);
  try {
    return JSON.parse(stored) as JsonValue;
  } catch (error) {
    throw new RepositoryError('a stored param is not valid JSON', { cause: error });
  }
}

/**
 * Bounds a {@link TaskError} for storage and drops absent fields (the driver would store `undefined` as null).
 *
 * @param error - the error a caller passed
 * @returns a copy with message and stack cut to the storage limits
 */
export function sanitizeTaskError(error: TaskError): TaskError {
  const out: TaskError = { message: String(error?.message ?? '').slice(0, MAX_ERROR_MESSAGE_LENGTH) };
  if (typeof error?.name === 'string') out.name = error.name.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error?.code === 'string') out.code = error.code.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error?.stack === 'string') out.stack = error.stack.slice(0, MAX_ERROR_STACK_LENGTH);
  return out;
}

function toLease(lease: LeaseDocument | null | undefined): Lease | null {
  if (lease === null || lease === undefined) return null;
  // A lease without the field was taken by a claim of an older version, which always started the run at once.
  return { owner: lease.owner, until: lease.until, token: lease.token, started: lease.started !== false };
}

function toProgress(progress: TaskProgress | null | undefined): TaskProgress | null {
  if (progress === null || progress === undefined) return null;
  const out: TaskProgress = { completed: progress.completed, total: progress.total, at: progress.at };
  if (typeof progress.message === 'string') out.message = progress.message;
  return out;
}

/**
 * Maps a stored document to the {@link TaskInfo} callers see.
 *
 * @param doc - a document as read from the tasks collection
 * @returns a fresh TaskInfo (no storage-only field: `live`, `seq`, `claimOrder` and `_id` are dropped or renamed)
 */
export function toTaskInfo(doc: TaskDocument): TaskInfo {
  return {
    id: doc._id,
    workId: doc.workId,
    param: decodeParam(doc.param),
    scheduledAt: doc.scheduledAt,
    state: doc.state,
    priority: doc.priority,
    attempt: doc.attempt,
    // Before claims ahead, every claim started a run: the claims so far are the attempts so far.
    claims: doc.claims ?? doc.attempt,
    unstartedClaims: doc.unstartedClaims ?? 0,
    maxAttempts: doc.maxAttempts,
    lease: toLease(doc.lease),
    lastError: doc.lastError === null || doc.lastError === undefined ? null : sanitizeTaskError(doc.lastError),
    uniqueKey: doc.uniqueKey ?? null,
    progress: toProgress(doc.progress),
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
    kind: doc.kind ?? 'scheduled',
    scheduleName: doc.scheduleName ?? null,
  };
}

/**
 * Maps an embedded attempt record to the {@link TaskAttempt} callers see.
 *
 * @param taskId - the task the record belongs to
 * @param doc - the record as read from the task's `attempts` array
 * @returns a fresh TaskAttempt (its check-ins copied, its error bounded)
 */
export function toTaskAttempt(taskId: string, doc: AttemptDocument): TaskAttempt {
  return {
    taskId,
    run: doc.run,
    attempt: doc.attempt,
    node: doc.node,
    startedAt: doc.startedAt,
    endedAt: doc.endedAt ?? null,
    outcome: doc.outcome,
    error: doc.error === null || doc.error === undefined ? null : sanitizeTaskError(doc.error),
    checkIns: (doc.checkIns ?? []).map((checkIn) => ({ at: checkIn.at, message: checkIn.message })),
  };
}

/** A document of the meta collection (the schema version, the change counter): keyed by a string. */
export interface MetaDocument {
  /** `schema` or `changes`. */
  _id: string;
  /** Any other field. */
  [field: string]: unknown;
}
