/**
 * The opaque cursors the adapter hands out: change cursors for `getUpdatedSince`, page cursors for
 * `list` and `listDue`. Both are plain strings; a malformed one is refused as bad input.
 */
import { InvalidInputError, quoteInput } from '@horae/core';

/**
 * A position in the change log: every change with a sequence below `seq` was read, and of those at
 * `seq`, every one whose task id sorts at or before `id` (all of them when `id` is null).
 */
export interface ChangePosition {
  /** The change sequence. */
  seq: number;
  /** The last task id read at `seq`; null when every change at `seq` was read. */
  id: string | null;
}

/** The position before any change: where a null cursor starts. */
export const START_POSITION: ChangePosition = { seq: 0, id: null };

/**
 * Encodes a change position as a cursor string: `"<seq>"` or `"<seq>/<id>"`.
 *
 * @param position - the position
 * @returns the cursor
 */
export function encodeChangeCursor(position: ChangePosition): string {
  return position.id === null ? String(position.seq) : `${position.seq}/${position.id}`;
}

function parseSeq(text: string, cursor: string): number {
  const seq = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(seq)) throw new InvalidInputError(`${quoteInput(cursor)} is not a change cursor of the MongoDB repository`);
  return seq;
}

/**
 * Decodes a cursor from {@link encodeChangeCursor}; null is the start of the log.
 *
 * @param cursor - the cursor, or null
 * @returns the position
 * @throws InvalidInputError when the cursor was not made by this adapter
 */
export function decodeChangeCursor(cursor: string | null): ChangePosition {
  if (cursor === null) return START_POSITION;
  if (typeof cursor !== 'string') throw new InvalidInputError('a change cursor must be a string or null');
  const slash = cursor.indexOf('/');
  if (slash === -1) return { seq: parseSeq(cursor, cursor), id: null };
  const id = cursor.slice(slash + 1);
  if (id === '') throw new InvalidInputError(`${quoteInput(cursor)} is not a change cursor of the MongoDB repository`);
  return { seq: parseSeq(cursor.slice(0, slash), cursor), id };
}

/** A position in a list ordered by a date, then id. */
export interface PagePosition {
  /** The date of the last row read. */
  at: Date;
  /** The id of the last row read. */
  id: string;
}

/**
 * Encodes a page position as `"<epoch ms>/<id>"`.
 *
 * @param position - the last row of a page
 * @returns the `next` cursor
 */
export function encodePageCursor(position: PagePosition): string {
  return `${position.at.getTime()}/${position.id}`;
}

/**
 * Decodes a cursor from {@link encodePageCursor}.
 *
 * @param cursor - the `next` of a previous page
 * @returns the position
 * @throws InvalidInputError when the cursor was not made by this adapter
 */
export function decodePageCursor(cursor: string): PagePosition {
  const match = typeof cursor === 'string' ? /^(-?\d{1,16})\/(.+)$/s.exec(cursor) : null;
  const ms = match ? Number(match[1]) : NaN;
  if (match === null || !Number.isSafeInteger(ms) || match[2] === undefined) {
    throw new InvalidInputError(`${quoteInput(cursor)} is not a page cursor of the MongoDB repository`);
  }
  return { at: new Date(ms), id: match[2] };
}
