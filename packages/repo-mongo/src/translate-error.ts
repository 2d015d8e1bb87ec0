import { HoraeError, InvalidInputError } from '@horae/core';
import { RepositoryError } from '@horae/storage';

/** The server's code for a unique index violation. */
export const DUPLICATE_KEY_CODE = 11000;

/** Server codes for a document over the 16 MiB BSON limit (insert, and update results). */
const TOO_LARGE_CODES: ReadonlySet<number> = new Set([10334, 17419, 17420]);

/** Which unique index a duplicate key error hit. */
export type DuplicateKeyIndex = 'id' | 'uniqueKey' | 'unknown';

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** True for a driver error reporting a unique index violation (code 11000). */
export function isDuplicateKeyError(error: unknown): boolean {
  return codeOf(error) === DUPLICATE_KEY_CODE;
}

/**
 * Names the unique index a duplicate key error hit: the task id (`_id`) or the live uniqueKey index.
 *
 * @param error - a driver error for which {@link isDuplicateKeyError} holds
 * @param uniqueKeyIndexName - the name of the live uniqueKey index
 * @returns 'id', 'uniqueKey', or 'unknown' when the error names neither
 */
export function duplicateKeyIndex(error: unknown, uniqueKeyIndexName: string): DuplicateKeyIndex {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { keyPattern?: unknown; message?: unknown };
  // Servers ≥ 4.4 put the key pattern on the error; older ones only name the index in the message.
  if (typeof e.keyPattern === 'object' && e.keyPattern !== null) {
    if ('_id' in e.keyPattern) return 'id';
    if ('uniqueKey' in e.keyPattern) return 'uniqueKey';
  }
  const message = typeof e.message === 'string' ? e.message : '';
  if (message.includes(`index: ${uniqueKeyIndexName}`)) return 'uniqueKey';
  if (message.includes('index: _id_')) return 'id';
  return 'unknown';
}

/** True for an error thrown by the mongodb driver (every driver error class is named `Mongo…`). */
export function isDriverError(error: unknown): boolean {
  return error instanceof Error && (error.name.startsWith('Mongo') || error.name === 'BSONError');
}

/**
 * Turns what a driver call threw into a Horae error, keeping the original as `cause`.
 *
 * @param error - what was thrown
 * @param operation - what the adapter was doing, for the message (`"claim task 42"`)
 * @returns a HoraeError unchanged; a duplicate key or an over-large document as InvalidInputError; any other
 * driver error (network, timeout, server selection, a closed client) as RepositoryError; anything else unchanged
 */
export function translateMongoError(error: unknown, operation: string): unknown {
  if (error instanceof HoraeError) return error;
  const code = codeOf(error);
  if (code === DUPLICATE_KEY_CODE) return new InvalidInputError(`cannot ${operation}: a unique key is taken`, { cause: error });
  if (typeof code === 'number' && TOO_LARGE_CODES.has(code)) {
    return new InvalidInputError(`cannot ${operation}: the task exceeds MongoDB's 16 MiB document limit`, { cause: error });
  }
  if (isDriverError(error)) {
    const message = error instanceof Error ? error.message : String(error);
    return new RepositoryError(`MongoDB failed to ${operation}: ${message}`, { cause: error });
  }
  return error;
}
