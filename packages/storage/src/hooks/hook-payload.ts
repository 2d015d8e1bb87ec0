/**
 * What a status hook says: the state change of a task as the bridge reports it, and the JSON body it becomes.
 */
import type { TaskError, TaskState } from '../contract/task-info.js';
import { MAX_ERROR_MESSAGE_LENGTH } from '../contract/validation.js';

/** One state change of a task, as the storage middleware reports it to a status hook. */
export interface StatusChange {
  /** The task's id. */
  taskId: string;
  /** The id of its work. */
  workId: string;
  /** The state it left; null when the task was just created. */
  from: TaskState | null;
  /** The state it entered. */
  to: TaskState;
  /** The task's attempt counter after the change. */
  attempt: number;
  /**
   * When the change happened.
   *
   * @defaultValue the sender's clock when the change was handed over
   */
  time?: Date | number;
  /** The error that caused the change (an Error, a stored TaskError, or any thrown value); left out when none. */
  error?: unknown;
}

/** The error as it is sent: no stack, so that no source paths leave the process. */
export type StatusHookErrorInfo = Pick<TaskError, 'message' | 'name' | 'code'>;

/** The JSON body of a status hook request, in this key order. */
export interface StatusHookPayload {
  /** The task's id. */
  taskId: string;
  /** The id of its work. */
  workId: string;
  /** The state it left; null when the task was just created. */
  from: TaskState | null;
  /** The state it entered. */
  to: TaskState;
  /** The task's attempt counter after the change. */
  attempt: number;
  /** When the change happened, ISO 8601 in UTC. */
  time: string;
  /** Present only when the change carried an error. */
  error?: StatusHookErrorInfo;
}

/**
 * Builds the JSON payload of a change. Total: it never throws, whatever the change holds.
 *
 * @param change - the transition
 * @param now - the time to use when the change has none (or an invalid one)
 * @returns the payload, with `error` only when the change has one
 */
export function toStatusHookPayload(change: StatusChange, now: number): StatusHookPayload {
  const given = change.time instanceof Date ? change.time.getTime() : typeof change.time === 'number' ? change.time : Number.NaN;
  const time = new Date(Number.isFinite(given) && Math.abs(given) <= 8.64e15 ? given : now);
  const payload: StatusHookPayload = {
    taskId: String(change.taskId),
    workId: String(change.workId),
    from: change.from ?? null,
    to: change.to,
    attempt: Number(change.attempt),
    time: time.toISOString(),
  };
  if (change.error !== undefined && change.error !== null) payload.error = toErrorInfo(change.error);
  return payload;
}

function toErrorInfo(error: unknown): StatusHookErrorInfo {
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    // An Error, or a TaskError read back from the repository.
    const { message, name, code } = error as { message: string; name?: unknown; code?: unknown };
    const out: StatusHookErrorInfo = { message: message.slice(0, MAX_ERROR_MESSAGE_LENGTH) };
    if (typeof name === 'string') out.name = name;
    if (typeof code === 'string' || typeof code === 'number') out.code = String(code);
    return out;
  }
  return { message: safeString(error).slice(0, MAX_ERROR_MESSAGE_LENGTH) };
}

/** String(value), or a placeholder for the odd value whose conversion throws (an object without a prototype). */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return '[unprintable error]';
  }
}
