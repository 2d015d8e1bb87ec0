/**
 * The first `limit` items of `items` in the order of `compare`, sorted: a sorted run of at most `limit` items that
 * an item joins only when it comes before the last one, so a batch of a large backlog costs one pass over it
 * rather than a sort of all of it.
 */
export function firstInOrder<T>(items: Iterable<T>, limit: number, compare: (a: T, b: T) => number): T[] {
  const best: T[] = [];
  if (limit <= 0) return best;
  for (const item of items) {
    if (best.length === limit && compare(item, best[limit - 1]!) >= 0) continue;
    // Binary search for the first element that comes after the item: equal items keep their arrival order.
    let lo = 0;
    let hi = best.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compare(best[mid]!, item) <= 0) lo = mid + 1;
      else hi = mid;
    }
    best.splice(lo, 0, item);
    if (best.length > limit) best.pop();
  }
  return best;
}
