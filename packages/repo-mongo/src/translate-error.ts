/**
 * Turns what the mongodb driver throws into Horae errors, keeping the driver's error as `cause`, and sorts them by
 * whether a retry can ever succeed: an outage (retried by the storage layer until the write lands) or a refusal
 * (thrown to the caller at once).
 */
import { HoraeError, quoteInput } from '@horae/core';
import { RepositoryError, ValueRefusedError } from '@horae/storage';

/** The server's code for a unique index violation. */
export const DUPLICATE_KEY_CODE = 11000;

/** Server codes for a document over the 16 MiB BSON limit (insert, and update results). */
const TOO_LARGE_CODES: ReadonlySet<number> = new Set([10334, 17419, 17420]);

/**
 * Server codes of a refusal of the values a command carries, which no retry can cure: a document over the 16 MiB
 * limit (10334 BSONObjectTooLarge, 17419 and 17420 after an update), an index key over the limit of servers before
 * 4.2 (17280 KeyTooLong), a value of a refused type or shape (2 BadValue, 14 TypeMismatch), a document that fails a
 * validator (121 DocumentValidationFailure).
 */
const REFUSAL_CODES: ReadonlySet<number> = new Set([2, 14, 121, 10334, 17280, 17419, 17420]);

/**
 * Driver errors raised in this process for a value the driver cannot send: a document over the server's maximum
 * size (`MongoInvalidArgumentError`), a value BSON cannot encode (`BSONError`). No retry can cure them.
 */
const REFUSAL_ERROR_NAMES: ReadonlySet<string> = new Set(['MongoInvalidArgumentError', 'BSONError']);

/** How much of the driver's message an error quotes. */
const MAX_DETAIL_LENGTH = 200;

/** Which unique index a duplicate key error hit. */
export type DuplicateKeyIndex = 'id' | 'uniqueKey' | 'unknown';

function codeOf(error: unknown): unknown {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, writeErrors } = error as { code?: unknown; writeErrors?: unknown };
  if (code !== undefined) return code;
  // A bulk write's error carries the code of its first failed write.
  return Array.isArray(writeErrors) ? (writeErrors[0] as { code?: unknown } | undefined)?.code : undefined;
}

/**
 * True for a refusal that no retry can cure: a server code of {@link REFUSAL_CODES}, a duplicate key, or a driver
 * error raised for a value the driver cannot send. Everything else that the driver throws (a network error, a
 * timeout, no server to select, a closed client, an election, a missing privilege) is an outage and is retried.
 */
export function isRefusal(error: unknown): boolean {
  const code = codeOf(error);
  if (typeof code === 'number' && (code === DUPLICATE_KEY_CODE || REFUSAL_CODES.has(code))) return true;
  return error instanceof Error && REFUSAL_ERROR_NAMES.has(error.name);
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
 * @returns a HoraeError unchanged; a refusal no retry can cure ({@link isRefusal}: a duplicate key, a document or
 * index key too large, a value the server or the driver refuses) as ValueRefusedError, whose `driverCode` is the
 * server's code or the driver error's name, and which the storage layer does not retry; any other driver error
 * (network, timeout, server selection, a closed client) as RepositoryError, which it retries; anything else unchanged
 */
export function translateMongoError(error: unknown, operation: string): unknown {
  if (error instanceof HoraeError) return error;
  const code = codeOf(error);
  const driverCode = typeof code === 'number' || typeof code === 'string' ? String(code) : error instanceof Error ? error.name : 'unknown';
  if (code === DUPLICATE_KEY_CODE) return new ValueRefusedError(`cannot ${operation}: a unique key is taken`, driverCode, { cause: error });
  if (typeof code === 'number' && TOO_LARGE_CODES.has(code)) {
    return new ValueRefusedError(`cannot ${operation}: the task exceeds MongoDB's 16 MiB document limit`, driverCode, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  const detail = message.length > MAX_DETAIL_LENGTH ? quoteInput(message, MAX_DETAIL_LENGTH) : message;
  if (isRefusal(error)) {
    return new ValueRefusedError(`MongoDB refused to ${operation} (${driverCode}; a retry cannot succeed): ${detail}`, driverCode, { cause: error });
  }
  if (isDriverError(error)) return new RepositoryError(`MongoDB failed to ${operation}: ${detail}`, { cause: error });
  return error;
}
