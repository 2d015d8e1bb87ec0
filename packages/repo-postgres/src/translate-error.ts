/**
 * Turns what the `pg` driver throws into Horae errors, keeping the driver's error as `cause`, and sorts them by
 * whether a retry can ever succeed: an outage (retried by the storage layer until the write lands) or a refusal
 * (thrown to the caller at once).
 */
import { HoraeError, quoteInput } from '@horae/core';
import { RepositoryError, ValueRefusedError } from '@horae/storage';

/** The SQLSTATE of a driver error, when it has one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The constraint a driver error names, when it names one. */
function constraintOf(error: unknown): string | undefined {
  const constraint = (error as { constraint?: unknown } | null)?.constraint;
  return typeof constraint === 'string' ? constraint : undefined;
}

/**
 * The SQLSTATE classes of a refusal that no retry can cure: the statement was refused for the values it carries,
 * and sending it again sends the same values.
 *
 * - `22` data exception: a NUL character in text, an invalid encoding, a number or date out of range;
 * - `23` integrity constraint violation: a unique, check, not-null or foreign key constraint;
 * - `54` program limit exceeded: `54000` "index row size exceeds btree maximum" (a key too large for its index),
 *   `54001` statement too complex, `54023` too many arguments.
 *
 * Every other class is an outage or needs an operator (`08` connection, `40` rollback, `53` insufficient resources
 * such as a full disk, `57` operator intervention, `58` system error, `42501` a missing privilege, `42P01` a
 * dropped table): the write waits and is retried, so it lands once the cause is gone.
 */
const REFUSAL_CLASSES: ReadonlySet<string> = new Set(['22', '23', '54']);

/** How much of the server's message an error quotes: messages of class 22 repeat the value they refused. */
const MAX_DETAIL_LENGTH = 200;

/**
 * True for errors after which the same statement may simply be sent again: a deadlock or a serialization
 * failure aborted it before it wrote anything.
 */
export function isRetryable(error: unknown): boolean {
  const state = sqlState(error);
  return state === '40P01' || state === '40001';
}

/** True for a refusal no retry can cure (SQLSTATE class 22, 23 or 54): see {@link translateError}. */
export function isRefusal(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && REFUSAL_CLASSES.has(state.slice(0, 2));
}

/**
 * Maps a driver error to a Horae error.
 *
 * - a HoraeError passes through unchanged;
 * - 23505 unique_violation on the primary key → ValueRefusedError ("id taken");
 * - any other refusal that no retry can cure (SQLSTATE class 22 data exception, 23 integrity constraint violation,
 *   54 program limit exceeded) → ValueRefusedError, with the SQLSTATE as `driverCode`; the statement failed, so
 *   nothing was written, and the storage layer does not retry it;
 * - anything else (connection refused or dropped, server shutting down, timeouts, a full disk) → RepositoryError,
 *   which the storage layer retries until the write lands.
 *
 * The server's message is quoted up to 200 characters: a data exception repeats the value it refused.
 *
 * @param error - what the driver threw
 * @param action - what the adapter was doing, for the message ("insert a task")
 * @returns the error to throw, with `error` as its `cause`
 */
export function translateError(error: unknown, action: string): HoraeError {
  if (error instanceof HoraeError) return error;
  const state = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  const detail = message.length > MAX_DETAIL_LENGTH ? quoteInput(message, MAX_DETAIL_LENGTH) : message;
  if (state === '23505' && constraintOf(error) === 'tasks_pkey') {
    return new ValueRefusedError(`cannot ${action}: the id is taken by another task`, state, { cause: error });
  }
  if (state !== undefined && isRefusal(error)) {
    return new ValueRefusedError(`PostgreSQL refused to ${action} (SQLSTATE ${state}; a retry cannot succeed): ${detail}`, state, { cause: error });
  }
  return new RepositoryError(`PostgreSQL failed to ${action}: ${detail}`, { cause: error });
}
