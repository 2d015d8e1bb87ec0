/**
 * The opaque `after` cursors of `list` and `listDue`: the sort key of the last row of a page, so the next
 * page starts right after it even when rows were inserted in between.
 */
import { InvalidInputError, quoteInput } from '@horae/core';

/** A position in an order by (time, id). */
export interface PagePosition {
  /** The time column of the last row, epoch ms. */
  at: number;
  /** Its id. */
  id: string;
}

/** The position before every row. */
export const PAGE_START: PagePosition = { at: Number.MIN_SAFE_INTEGER, id: '' };

/** Encodes a position as an opaque string. */
export function encodePageCursor(position: PagePosition): string {
  return Buffer.from(JSON.stringify([position.at, position.id]), 'utf8').toString('base64url');
}

/**
 * Decodes an `after` cursor; null or undefined is the start.
 *
 * @throws InvalidInputError when the cursor was not made by {@link encodePageCursor}
 */
export function decodePageCursor(cursor: string | null | undefined): PagePosition {
  if (cursor === null || cursor === undefined) return PAGE_START;
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && typeof value[1] === 'string') {
      return { at: value[0] as number, id: value[1] };
    }
  } catch {
    // fall through to the error below
  }
  throw new InvalidInputError(`${quoteInput(cursor)} is not a page cursor of this repository`);
}

/**
 * Decodes a change cursor of `getUpdatedSince`: the last `change_seq` seen, as a decimal string.
 *
 * @throws InvalidInputError when it is not one
 */
export function decodeChangeCursor(cursor: string | null): number {
  if (cursor === null) return 0;
  if (typeof cursor === 'string' && /^\d{1,15}$/.test(cursor)) return Number(cursor);
  throw new InvalidInputError(`${quoteInput(cursor)} is not a change cursor of this repository`);
}
