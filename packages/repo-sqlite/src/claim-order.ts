/**
 * The order in which `claimDue` hands out due tasks: highest effective priority first, aged as the core Dispatcher
 * ages it (`priority + waitedMs / agingMs`), then earliest due, then oldest, then id.
 *
 * Multiplied by agingMs (> 0, so the order holds) and less `now` (the same for every task of one claim), the effective
 * priority orders as `priority × agingMs − scheduledAt`: a key that does not depend on the time. For the default
 * agingMs an index holds it (see STATEMENT_SQL.selectDueAged). For any other agingMs, this module merges the priority
 * levels: within one level the key orders as the due time, so the claim index `(priority DESC, scheduled_at,
 * created_at, id)` hands out each level already in claim order, and only the heads of the levels need comparing.
 */
import type { TaskRow } from './row-mapping.js';

/** Where {@link mergeLevels} reads the due rows of each priority level, all inside one transaction. */
export interface LevelSource {
  /** The highest priority of an Initialized task below `below`, or null when there is none. */
  topPriorityBelow(below: number): number | null;
  /** At most `limit` due rows of the level `priority`, in claim order (earliest due, then oldest, then id). */
  dueOfLevel(priority: number, limit: number): TaskRow[];
  /** The earliest due time of any Initialized task, epoch ms (null when there is none). */
  earliestDue(): number | null;
}

/**
 * The aged key of a row: higher is claimed first. It is exact for integer priorities and agingMs (an integer below
 * 2^53), so two rows whose effective priorities tie exactly fall to the due time, as the contract says, rather than
 * to the rounding of a division. With agingMs Infinity: the priority alone.
 */
function agedKey(agingMs: number): (row: TaskRow) => number {
  return agingMs === Number.POSITIVE_INFINITY ? (row) => row.priority : (row) => row.priority * agingMs - row.scheduled_at;
}

/**
 * The claim order as a comparator of rows.
 *
 * @param agingMs - a number > 0, or Infinity for priority alone
 * @returns a comparator: negative when `a` is claimed before `b`
 */
export function claimOrder(agingMs: number): (a: TaskRow, b: TaskRow) => number {
  const key = agedKey(agingMs);
  return (a, b) => key(b) - key(a) || a.scheduled_at - b.scheduled_at || a.created_at - b.created_at || compareText(a.id, b.id);
}

/**
 * The first `limit` due rows in claim order, merged from the priority levels, highest level first.
 *
 * Rule: the result is exactly the first `limit` rows of the claim order over every due row the source holds. A level
 * is read only while it could still place a row among them: no due row of level `q` has a key above
 * `q × agingMs − earliestDue`, so once `limit` rows are held and that bound falls below the key of the last one, this
 * level and every lower one are left unread. With agingMs Infinity that happens at the first level below a full
 * result, as a walk by priority alone would stop.
 *
 * Cost: one index probe per level visited and one range read of at most `limit` rows; with the few priority levels
 * most applications use, a few probes. Many distinct priorities within the aging window of the backlog make it read
 * that many levels.
 *
 * @param source - the reads, inside the claim's transaction
 * @param limit - the most rows to return (≥ 1)
 * @param agingMs - a number > 0, or Infinity
 * @returns the rows, in claim order
 */
export function mergeLevels(source: LevelSource, limit: number, agingMs: number): TaskRow[] {
  const key = agedKey(agingMs);
  const order = claimOrder(agingMs);
  let earliest: number | null | undefined;
  let best: TaskRow[] = [];
  let below = Number.POSITIVE_INFINITY;
  for (;;) {
    const level = source.topPriorityBelow(below);
    if (level === null) break;
    below = level;
    const last = best.length >= limit ? best[limit - 1] : undefined;
    if (last !== undefined) {
      // Read once, and only when a full result may let the walk stop.
      if (agingMs !== Number.POSITIVE_INFINITY && earliest === undefined) earliest = source.earliestDue();
      const bound = agingMs === Number.POSITIVE_INFINITY ? level : earliest === null || earliest === undefined ? Number.NEGATIVE_INFINITY : level * agingMs - earliest;
      // Strictly below: a row of a lower level with an equal key is due earlier, and comes first.
      if (bound < key(last)) break;
    }
    const rows = source.dueOfLevel(level, limit);
    if (rows.length === 0) continue;
    best = [...best, ...rows].sort(order).slice(0, limit);
  }
  return best;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
