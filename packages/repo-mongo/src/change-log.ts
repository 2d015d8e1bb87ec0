/**
 * The change log behind `getUpdatedSince`: a counter document that hands every write a sequence number
 * (a ticket), and the set of tickets still in flight, so that a reader never steps over a write that may
 * yet commit below what it has read.
 *
 * Why not a timestamp: two writes can share one, and nodes' clocks differ. Why not the bare counter: a
 * write that took seq 7 can commit after the write that took seq 8, and a reader that had read 8 would
 * never see 7. So a writer records its ticket as pending in the same atomic update that takes it, and
 * removes it once its write is done; readers stop below the lowest pending ticket (the watermark).
 *
 * A writer that dies while holding a ticket would hold readers back forever; so a pending ticket counts
 * only for `expiryMs`. A write may stamp its ticket's sequence only while the server's clock is before
 * the ticket's deadline (`ttlMs` after it was taken, `ttlMs < expiryMs`); a write evaluated later stamps
 * null instead, and a null sequence is stamped again with a fresh ticket by the writer or by the next
 * reader. So no write lands below a watermark a reader has already passed, provided a write becomes
 * visible to readers within `expiryMs - ttlMs` of its evaluation (replication lag included).
 */
import type { Collection, Document } from 'mongodb';
import { RepositoryError } from '@horae/storage';
import type { ChangeTicket } from './queries.js';
import type { MetaDocument } from './task-document.js';

/** The `_id` of the counter document in the meta collection. */
export const CHANGE_LOG_ID = 'changes';

/** How the counter document looks. */
export interface ChangeLogDocument {
  /** Always {@link CHANGE_LOG_ID}. */
  _id: string;
  /** The last sequence handed out. */
  seq: number;
  /** Tickets taken and not yet released, each with when it was taken (server clock). */
  pending: { seq: number; at: Date }[];
  /** The ticket the last update handed out: the taker reads its own ticket here. */
  last: { seq: number; at: Date };
}

/** Drops pending tickets older than `expiryMs` by the server's clock. */
function livePending(expiryMs: number): Document {
  return {
    $filter: {
      input: { $ifNull: ['$pending', []] },
      cond: { $gt: [{ $add: ['$$this.at', { $literal: expiryMs }] }, '$$NOW'] },
    },
  };
}

/**
 * The update that takes a ticket, as one atomic write on the counter document: increments the sequence,
 * records the new ticket as pending (and forgets expired ones), and leaves it in `last` for the taker.
 *
 * @param expiryMs - how long a pending ticket holds readers back
 */
export function takeTicketPipeline(expiryMs: number): Document[] {
  return [
    { $set: { seq: { $add: [{ $ifNull: ['$seq', 0] }, 1] } } },
    { $set: { last: { seq: '$seq', at: '$$NOW' } } },
    { $set: { pending: { $concatArrays: [livePending(expiryMs), [{ seq: '$seq', at: '$$NOW' }]] } } },
  ];
}

/** The update that releases a ticket once its write is done. */
export function releaseTicketUpdate(seq: number): Document {
  return { $pull: { pending: { seq } } };
}

/**
 * The aggregation that reads the watermark: the last sequence, and the lowest pending ticket that has not
 * expired by the server's clock.
 *
 * @param expiryMs - how long a pending ticket holds readers back
 */
export function watermarkPipeline(expiryMs: number): Document[] {
  return [
    { $match: { _id: CHANGE_LOG_ID } },
    { $project: { _id: 0, seq: { $ifNull: ['$seq', 0] }, lowestPending: { $min: { $map: { input: livePending(expiryMs), in: '$$this.seq' } } } } },
  ];
}

/**
 * The highest sequence below which every write has finished (or expired).
 *
 * @param row - the result of {@link watermarkPipeline}, undefined when the counter does not exist yet
 * @returns the watermark: `lowestPending - 1`, or `seq` when nothing is pending; 0 before the first write
 */
export function watermarkOf(row: { seq?: unknown; lowestPending?: unknown } | undefined): number {
  if (row === undefined) return 0;
  const seq = typeof row.seq === 'number' ? row.seq : 0;
  const lowest = typeof row.lowestPending === 'number' ? row.lowestPending : null;
  return lowest === null ? seq : Math.min(seq, lowest - 1);
}

/**
 * Turns the counter document returned by {@link takeTicketPipeline} into the taker's ticket.
 *
 * @param doc - the counter document after the update
 * @param ttlMs - how long the write may use the ticket's sequence
 */
export function ticketOf(doc: Pick<ChangeLogDocument, 'last'>, ttlMs: number): ChangeTicket {
  return { seq: doc.last.seq, deadline: new Date(doc.last.at.getTime() + ttlMs) };
}

/** The slice of a driver collection the change log uses. */
type MetaCollection = Pick<Collection<MetaDocument>, 'findOneAndUpdate' | 'updateOne' | 'aggregate'>;

/**
 * Hands out change tickets and reads the watermark, on the counter document of the meta collection.
 *
 * Rule: every ticket taken is released or expires; while one is pending, {@link ChangeLog.watermark} stays
 * below its sequence.
 */
export class ChangeLog {
  readonly #meta: MetaCollection;
  readonly #ttlMs: number;
  readonly #expiryMs: number;

  /**
   * @param meta - the meta collection
   * @param ttlMs - how long a write may use its ticket's sequence
   * @param expiryMs - how long an unreleased ticket holds readers back (greater than `ttlMs`)
   */
  constructor(meta: MetaCollection, ttlMs: number, expiryMs: number) {
    this.#meta = meta;
    this.#ttlMs = ttlMs;
    this.#expiryMs = expiryMs;
  }

  /** Takes a ticket. @returns the ticket @throws the driver's error */
  async take(): Promise<ChangeTicket> {
    const doc = await this.#meta.findOneAndUpdate({ _id: CHANGE_LOG_ID }, takeTicketPipeline(this.#expiryMs), {
      upsert: true,
      returnDocument: 'after',
      projection: { last: 1 },
    });
    if (doc === null) throw new RepositoryError('MongoDB returned no change counter after an upsert');
    return ticketOf(doc as unknown as ChangeLogDocument, this.#ttlMs);
  }

  /**
   * Releases a ticket. A failure is swallowed: the write it guarded has already landed (or failed), and an
   * unreleased ticket expires on its own; throwing would make a caller retry a write that succeeded.
   */
  async release(ticket: ChangeTicket): Promise<void> {
    try {
      await this.#meta.updateOne({ _id: CHANGE_LOG_ID }, releaseTicketUpdate(ticket.seq));
    } catch {
      // The ticket expires after expiryMs; readers wait at most that long.
    }
  }

  /**
   * Runs `write` under a fresh ticket, and releases the ticket whatever happens.
   *
   * @param write - the write; it stamps `ticket` on what it changes
   * @returns what `write` returns
   */
  async withTicket<T>(write: (ticket: ChangeTicket) => Promise<T>): Promise<T> {
    const ticket = await this.take();
    try {
      return await write(ticket);
    } finally {
      await this.release(ticket);
    }
  }

  /** Reads the watermark: no write at or below it can still commit. @returns the watermark */
  async watermark(): Promise<number> {
    const rows = await this.#meta.aggregate<{ seq?: unknown; lowestPending?: unknown }>(watermarkPipeline(this.#expiryMs)).toArray();
    return watermarkOf(rows[0]);
  }
}
