/**
 * The rows a repository has just written, by task id: the row a claim, a markAsStarted or a renewLease stored, for the
 * markAsStarted or markAsDone that follows, which then writes without reading the row first (a claim ahead remembers an
 * unstarted row: its markAsStarted uses it and remembers the started one). Rows are remembered once their transaction has committed.
 * Only those: remembering every inserted or listed row too (for the claim) was measured to cost more than the read it
 * saves, since rows kept alive that long survive young-generation garbage collections.
 *
 * A remembered row is a hint, never trusted as is: the write that uses it also requires the stored `change_seq` to be
 * the remembered one. Every write of a task row (on any connection, in any process) sets a new `change_seq` from the
 * counter, so an equal number means that nobody has written the row since, and the remembered row is exactly the
 * stored one. When the numbers differ the write changes nothing and the caller reads the row as it would without.
 */
import type { TaskRow } from './row-mapping.js';

/** What a row costs to keep, roughly, in characters: its JSON texts plus a fixed share for the other columns. */
function weightOf(row: TaskRow): number {
  return 256 + row.param.length + (row.last_error?.length ?? 0) + (row.progress?.length ?? 0);
}

/** A bounded map of task rows, oldest forgotten first. */
export class KnownRows {
  readonly #rows = new Map<string, TaskRow>();
  readonly #maxRows: number;
  readonly #maxWeight: number;
  #weight = 0;

  /**
   * @param maxRows - at most this many rows are kept; beyond it the oldest are forgotten (their next transition reads
   * them), down to 90%
   * @param maxWeight - at most this many characters of row text (params, errors, progress) are kept, likewise
   */
  constructor(maxRows: number, maxWeight: number) {
    this.#maxRows = maxRows;
    this.#maxWeight = maxWeight;
  }

  /** Remembers `row` as the stored row of its task, in place of any older one. */
  remember(row: TaskRow): void {
    this.forget(row.id);
    const weight = weightOf(row);
    if (weight > this.#maxWeight) return;
    this.#rows.set(row.id, row);
    this.#weight += weight;
    if (this.#rows.size > this.#maxRows || this.#weight > this.#maxWeight) this.#evict();
  }

  /** Returns the remembered row of `id` (undefined when none) and keeps it. */
  peek(id: string): TaskRow | undefined {
    return this.#rows.get(id);
  }

  /** Returns the remembered row of `id` (undefined when none) and forgets it. */
  take(id: string): TaskRow | undefined {
    const row = this.#rows.get(id);
    if (row !== undefined) this.forget(id);
    return row;
  }

  /** Forgets the row of `id`. */
  forget(id: string): void {
    const row = this.#rows.get(id);
    if (row === undefined) return;
    this.#rows.delete(id);
    this.#weight -= weightOf(row);
  }

  /**
   * Forgets the oldest rows down to 90% of both bounds, in one pass: a Map iterated from its start skips the slots of
   * the entries deleted before, so evicting one row per remember would cost more with every eviction.
   */
  #evict(): void {
    const rows = Math.floor(this.#maxRows * 0.9);
    const weight = Math.floor(this.#maxWeight * 0.9);
    for (const [id, row] of this.#rows) {
      if (this.#rows.size <= rows && this.#weight <= weight) break;
      this.#rows.delete(id);
      this.#weight -= weightOf(row);
    }
  }

  /** How many rows are remembered. */
  get size(): number {
    return this.#rows.size;
  }
}
