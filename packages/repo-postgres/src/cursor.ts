/**
 * The opaque cursors the adapter hands out: the change cursor of `getUpdatedSince` and the page cursors of
 * `list` and `listDue`.
 */
import { InvalidInputError, quoteInput } from '@horae/core';

/**
 * A position in the change log: the transaction id (xid8, as text) and sequence number of the last change
 * returned. Changes are ordered by (xid, seq).
 */
export interface ChangePosition {
  /** The xid8 of the writing transaction, in decimal. */
  xid: string;
  /** The change sequence number, in decimal. */
  seq: string;
}

/** The position before every change. */
export const START: ChangePosition = { xid: '0', seq: '0' };

/** Encodes a change position as an opaque cursor. */
export function encodeChangeCursor(position: ChangePosition): string {
  return `${position.xid}:${position.seq}`;
}

/**
 * Decodes a change cursor; null is the start.
 *
 * @throws InvalidInputError when the cursor was not made by this adapter
 */
export function decodeChangeCursor(cursor: string | null): ChangePosition {
  if (cursor === null) return START;
  const match = typeof cursor === 'string' ? /^(\d{1,20}):(\d{1,19})$/.exec(cursor) : null;
  if (match === null) throw new InvalidInputError(`not a PostgresRepository change cursor: ${quoteInput(cursor)}`);
  return { xid: match[1]!, seq: match[2]! };
}

/** A position in a list ordered by a time, then id. */
export interface PagePosition {
  /** The time of the last row, as an ISO string (milliseconds, like every stored time). */
  at: string;
  /** The id of the last row. */
  id: string;
}

/** Encodes a page position as an opaque cursor. */
export function encodePageCursor(at: Date, id: string): string {
  return `${at.getTime()}:${id}`;
}

/**
 * Decodes a page cursor; null or undefined is the first page.
 *
 * @throws InvalidInputError when the cursor was not made by this adapter
 */
export function decodePageCursor(cursor: string | null | undefined): PagePosition | null {
  if (cursor === null || cursor === undefined) return null;
  const match = typeof cursor === 'string' ? /^(-?\d{1,16}):([\s\S]+)$/.exec(cursor) : null;
  const ms = match === null ? NaN : Number(match[1]);
  const at = new Date(ms);
  if (match === null || !Number.isFinite(at.getTime())) throw new InvalidInputError(`not a PostgresRepository page cursor: ${quoteInput(cursor)}`);
  return { at: at.toISOString(), id: match[2]! };
}
