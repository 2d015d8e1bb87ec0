/**
 * The TimerQueue: every pending task of a scheduler behind ONE armed timer. Entries due at the same time with the
 * same priority share a bucket (a FIFO list linked through typed arrays); an 8-ary min-heap orders the buckets,
 * and a hash table finds a time's bucket. Thousands of tasks due in the same millisecond (the usual shape of a
 * big schedule) are then one heap entry: pushing or popping one of them does not walk the heap. No structure
 * allocates an object per entry: a pending entry costs 20 bytes, a bucket 70 to 100 more.
 */
import { MAX_TIMER_DELAY_MS, type Clock, type ClockTimer } from './clock.js';
import { InvalidInputError } from './errors.js';
import { quoteInput } from './quote-input.js';

/** Options of a {@link TimerQueue}. */
export interface TimerQueueOptions {
  /** Where time comes from. */
  clock: Clock;
  /**
   * Called once for each entry that is due, in queue order, after the entry left the queue. It may push or
   * remove entries, and stop the queue.
   */
  onDue: (id: number, runAt: number) => void;
  /**
   * The longest the queue sleeps before it reads the wall clock again. A forward jump of the wall clock (NTP
   * step, resume from suspend) makes due entries run within this bound.
   *
   * @defaultValue 1000
   */
  wallClockCheckMs?: number;
  /**
   * The most entries one timer callback runs before it yields to the event loop (the rest run on the next
   * turn), so that a burst of due entries does not block I/O.
   *
   * @defaultValue 10000
   */
  maxBatch?: number;
}

const INITIAL_CAPACITY = 1024;

/**
 * Validates a positive duration option.
 *
 * @throws {@link InvalidInputError} when `value` is not a number > 0 (Infinity allowed when `allowInfinity`)
 */
export function validatePositiveMs(value: number, what: string, allowInfinity: boolean): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0 || (!allowInfinity && !Number.isFinite(value))) {
    throw new InvalidInputError(`${what} must be a number > 0${allowInfinity ? ' (or Infinity)' : ''}, got ${quoteInput(value)}`);
  }
  return value;
}

const NONE = -1;

// The hash of a runAt in the bucket table: the low and high 32 bits of its integer part through murmur3's
// finalizer, so that consecutive milliseconds spread over the table. Times that differ only in a fraction, and
// the buckets of one runAt with different priorities, collide, which probing resolves.
function hashTime(runAt: number): number {
  let h = Math.imul(runAt | 0, 0x9e3779b1) ^ ((runAt / 4294967296) | 0);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function grownInt32(array: Int32Array<ArrayBuffer>, capacity: number, fill?: number): Int32Array<ArrayBuffer> {
  const grown = new Int32Array(capacity);
  if (fill !== undefined) grown.fill(fill, array.length);
  grown.set(array);
  return grown;
}

// A bucket table of `slots` empty slots: per slot, a runAt then a bucket (NONE when empty).
function emptyTable(slots: number): Float64Array<ArrayBuffer> {
  const table = new Float64Array(2 * slots);
  for (let i = 1; i < table.length; i += 2) table[i] = NONE;
  return table;
}

function grownFloat64(array: Float64Array<ArrayBuffer>, capacity: number): Float64Array<ArrayBuffer> {
  const grown = new Float64Array(capacity);
  grown.set(array);
  return grown;
}

/**
 * One armed timer over a min-heap of due times.
 *
 * Rules:
 * - At most one clock timer is armed at any time, whatever the number of entries.
 * - Entries leave in order of runAt, then higher priority, then lower seq; each entry leaves exactly once
 *   (through `onDue` or `remove`), so it never runs twice.
 * - Keys are wall-clock times (`clock.now()`). When the timer fires, every entry with runAt ≤ now leaves; the
 *   rest re-arm. A backward jump of the wall clock only delays the wake-up (nothing runs early, nothing is lost);
 *   a forward jump is noticed within `wallClockCheckMs`, because no armed delay is longer than that.
 * - Delays longer than 2^31-1 ms are armed in steps of at most {@link MAX_TIMER_DELAY_MS}.
 * - An entry whose runAt is in the past leaves on the next timer turn (a 0 ms timer).
 * - Costs, with b the number of buckets (distinct (runAt, priority) pairs queued): a `push` into an existing
 *   bucket is O(1), one that opens a bucket O(log b); an entry leaving (`onDue` or `remove`) is O(1), or
 *   O(log b) when it empties its bucket or is its bucket's first entry and shares its (runAt, priority) with
 *   another bucket (see below). A `remove` is never worse than O(log b).
 *
 * Ids are small non-negative integers the caller allocates densely (the scheduler reuses freed ids).
 *
 * @remarks Entries with the same runAt and priority share a bucket: a FIFO list in seq order, linked through
 * per-id typed arrays. The heap orders buckets, not entries, by (runAt, priority descending, seq of the first
 * entry), and a hash table maps a (runAt, priority) to the bucket that takes appends. A million tasks due in a
 * few thousand distinct milliseconds are thus a heap of a few thousand, and most pushes and pops touch only a
 * list. An entry pushed with a seq lower than its bucket's last (the scheduler re-queues a deferred task with
 * its first seq) cannot be appended without breaking the order, so it opens a bucket of its own beside it, with
 * the same runAt and priority, which the heap orders by first seq: the order stays exact, and in the worst case
 * (every entry out of order) the queue is the per-entry heap it was before buckets. Only while such twin
 * buckets exist does a bucket whose first entry left need to move in the heap.
 *
 * What buckets cost: when every entry has a time of its own, each is a bucket, so a push and the entry's leaving
 * pay a look-up in a table too big for the CPU's cache (a push about three times the per-entry heap's, ~0.3 µs
 * more; a pop ~15% more), and an entry takes ~60 bytes more than in that heap. That shape comes from tasks
 * scheduled one by one over time, where pushes are spread out; bulk schedules share their milliseconds.
 *
 * The heap is 8-ary and keeps each bucket's runAt and priority next to it, so that a sift, which walks log8(b)
 * levels, reads one or two cache lines per level instead of several scattered ones.
 */
export class TimerQueue {
  readonly #clock: Clock;
  readonly #onDue: (id: number, runAt: number) => void;
  readonly #checkMs: number;
  readonly #maxBatch: number;
  // Per id: the bucket it is queued in (NONE when not queued), its neighbours in the bucket's list, its seq.
  #bucketOf = new Int32Array(INITIAL_CAPACITY).fill(NONE);
  #prev = new Int32Array(INITIAL_CAPACITY);
  #next = new Int32Array(INITIAL_CAPACITY);
  #seqOf = new Float64Array(INITIAL_CAPACITY);
  // Per bucket: its heap position, first and last id, and the last id's seq (kept here so that an append reads
  // no per-id array at a random place). A free bucket's #head links to the next free one, so that freed buckets
  // are reused before the arrays grow.
  #pos = new Int32Array(INITIAL_CAPACITY);
  #head = new Int32Array(INITIAL_CAPACITY);
  #tail = new Int32Array(INITIAL_CAPACITY);
  #tailSeq = new Float64Array(INITIAL_CAPACITY);
  #freeBucket = NONE;
  #bucketsMade = 0;
  // Buckets that are not in the table (the twins of the remarks): while there are none, no two buckets share a
  // (runAt, priority), so the seq of a bucket's first entry never decides the heap order and a bucket whose
  // first entry leaves stays where it is.
  #twins = 0;
  // Per heap position: the bucket, its runAt and priority. Position 0 is the next due. The keys move with the
  // bucket (rather than being looked up through it) so that comparing siblings reads one cache line.
  #heap = new Int32Array(INITIAL_CAPACITY);
  #key = new Float64Array(INITIAL_CAPACITY);
  #priority = new Float64Array(INITIAL_CAPACITY);
  #buckets = 0;
  // Open addressing with linear probing, at most half full: per slot, a runAt and the bucket of that runAt that
  // takes appends (NONE when empty); the buckets of one runAt at other priorities sit further on the same probe
  // run. The runAt is kept here, not only in the heap, so that a probe reads one cache line: with many distinct
  // times, each indirection would be a cache miss.
  #table = emptyTable(2 * INITIAL_CAPACITY);
  #tableCount = 0;
  #size = 0;
  #started = false;
  #firing = false;
  #timer: ClockTimer | undefined = undefined;
  #armedFor = Number.POSITIVE_INFINITY;

  /**
   * @param options - clock, due callback and wall-clock check interval
   * @throws {@link InvalidInputError} when `wallClockCheckMs` or `maxBatch` is not a number > 0
   */
  constructor(options: TimerQueueOptions) {
    this.#clock = options.clock;
    this.#onDue = options.onDue;
    this.#checkMs = validatePositiveMs(options.wallClockCheckMs ?? 1000, 'wallClockCheckMs', true);
    this.#maxBatch = validatePositiveMs(options.maxBatch ?? 10_000, 'maxBatch', true);
  }

  /** How many entries are queued. */
  get size(): number {
    return this.#size;
  }

  /** Whether a clock timer is armed now (at most one ever is). */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts firing: arms the timer for the head entry. Calling it twice does nothing. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#arm();
  }

  /** Stops firing and clears the timer; entries stay queued. */
  stop(): void {
    this.#started = false;
    this.#disarm();
  }

  /**
   * Queues an id: O(1) when a bucket of its runAt and priority exists and its seq is not lower than that
   * bucket's last, else O(log b).
   *
   * @param id - a non-negative integer that is not queued now
   * @param runAt - when it is due, wall-clock epoch ms
   * @param priority - higher leaves first among equal runAt
   * @param seq - lower leaves first among equal runAt and priority
   */
  push(id: number, runAt: number, priority: number, seq: number): void {
    if (id >= this.#bucketOf.length) this.#growIds(id + 1);
    const table = this.#table;
    const mask = (table.length >> 1) - 1;
    let slot = hashTime(runAt) & mask;
    let bucket: number;
    while ((bucket = table[2 * slot + 1]!) !== NONE) {
      if (table[2 * slot] === runAt && this.#priority[this.#pos[bucket]!] === priority) break;
      slot = (slot + 1) & mask;
    }
    this.#seqOf[id] = seq;
    this.#next[id] = NONE;
    this.#size++;
    if (bucket !== NONE) {
      if (seq >= this.#tailSeq[bucket]!) {
        const tail = this.#tail[bucket]!;
        this.#bucketOf[id] = bucket;
        this.#prev[id] = tail;
        this.#next[tail] = id;
        this.#tail[bucket] = id;
        this.#tailSeq[bucket] = seq;
        // No re-arm: the bucket's runAt was in the heap already, so the timer is armed for it or earlier.
        return;
      }
      this.#twins++;
    }
    const created = this.#openBucket(id, seq);
    this.#siftUp(this.#buckets++, created, runAt, priority, seq);
    if (bucket === NONE) {
      table[2 * slot] = runAt;
      table[2 * slot + 1] = created;
      if (++this.#tableCount * 4 > table.length) this.#growTable();
    }
    // Only an entry due before the armed wake-up needs a new timer; the others wait for it.
    if (this.#started && !this.#firing && runAt < this.#armedFor) this.#arm();
  }

  /**
   * Removes a queued id: O(1) from the middle or end of its bucket, O(log b) at worst.
   *
   * @returns true when it was queued
   */
  remove(id: number): boolean {
    if (id >= this.#bucketOf.length) return false;
    const bucket = this.#bucketOf[id]!;
    if (bucket === NONE) return false;
    this.#bucketOf[id] = NONE;
    const prev = this.#prev[id]!;
    const next = this.#next[id]!;
    if (prev === NONE) this.#head[bucket] = next;
    else this.#next[prev] = next;
    if (next === NONE) {
      this.#tail[bucket] = prev;
      if (prev !== NONE) this.#tailSeq[bucket] = this.#seqOf[prev]!;
    } else {
      this.#prev[next] = prev;
    }
    this.#size--;
    if (prev === NONE) {
      if (next === NONE) this.#dropBucket(bucket);
      else if (this.#twins !== 0) this.#resift(bucket);
    }
    // The timer may now be armed early for an entry that left; it fires, finds nothing due, and re-arms.
    if (this.#size === 0) this.#disarm();
    return true;
  }

  /** Whether `id` is queued. */
  has(id: number): boolean {
    return id < this.#bucketOf.length && this.#bucketOf[id]! !== NONE;
  }

  /**
   * The runAt of a queued id.
   *
   * @returns its runAt, or NaN when it is not queued
   */
  runAtOf(id: number): number {
    const bucket = id < this.#bucketOf.length ? this.#bucketOf[id]! : NONE;
    return bucket === NONE ? Number.NaN : this.#key[this.#pos[bucket]!]!;
  }

  /** The runAt of the next entry to leave, or undefined when empty. */
  peekRunAt(): number | undefined {
    return this.#size === 0 ? undefined : this.#key[0];
  }

  #growIds(minimum: number): void {
    let capacity = this.#bucketOf.length * 2;
    while (capacity < minimum) capacity *= 2;
    this.#bucketOf = grownInt32(this.#bucketOf, capacity, NONE);
    this.#prev = grownInt32(this.#prev, capacity);
    this.#next = grownInt32(this.#next, capacity);
    this.#seqOf = grownFloat64(this.#seqOf, capacity);
  }

  // Grows the per-bucket and per-heap-position arrays together: there are never more buckets than made.
  #growBuckets(): void {
    const capacity = this.#pos.length * 2;
    this.#pos = grownInt32(this.#pos, capacity);
    this.#head = grownInt32(this.#head, capacity);
    this.#tail = grownInt32(this.#tail, capacity);
    this.#tailSeq = grownFloat64(this.#tailSeq, capacity);
    this.#heap = grownInt32(this.#heap, capacity);
    this.#key = grownFloat64(this.#key, capacity);
    this.#priority = grownFloat64(this.#priority, capacity);
  }

  #growTable(): void {
    const old = this.#table;
    const table = emptyTable(old.length);
    const mask = (table.length >> 1) - 1;
    for (let i = 0; i < old.length; i += 2) {
      const bucket = old[i + 1]!;
      if (bucket === NONE) continue;
      const runAt = old[i]!;
      let slot = hashTime(runAt) & mask;
      while (table[2 * slot + 1] !== NONE) slot = (slot + 1) & mask;
      table[2 * slot] = runAt;
      table[2 * slot + 1] = bucket;
    }
    this.#table = table;
  }

  // A bucket holding only `id`, not yet in the heap nor in the table.
  #openBucket(id: number, seq: number): number {
    let bucket = this.#freeBucket;
    if (bucket !== NONE) {
      this.#freeBucket = this.#head[bucket]!;
    } else {
      if (this.#bucketsMade >= this.#pos.length) this.#growBuckets();
      bucket = this.#bucketsMade++;
    }
    this.#head[bucket] = id;
    this.#tail[bucket] = id;
    this.#tailSeq[bucket] = seq;
    this.#bucketOf[id] = bucket;
    this.#prev[id] = NONE;
    return bucket;
  }

  // Takes an emptied bucket out of the table and the heap, and frees it.
  #dropBucket(bucket: number): void {
    const index = this.#pos[bucket]!;
    if (!this.#unregister(bucket, this.#key[index]!)) this.#twins--;
    const last = --this.#buckets;
    if (index < last) {
      const lastBucket = this.#heap[last]!;
      const lastKey = this.#key[last]!;
      const lastPriority = this.#priority[last]!;
      const lastSeq = this.#seqOf[this.#head[lastBucket]!]!;
      // The last bucket fills the hole: it moves up if it beats the hole's parent, else down.
      if (index > 0 && this.#beats(lastKey, lastPriority, lastSeq, (index - 1) >> 3)) {
        this.#siftUp(index, lastBucket, lastKey, lastPriority, lastSeq);
      } else {
        this.#siftDown(index, lastBucket, lastKey, lastPriority, lastSeq);
      }
    }
    this.#head[bucket] = this.#freeBucket;
    this.#freeBucket = bucket;
  }

  // Removes `bucket` from the table if it is there (backward-shift deletion, so no tombstones accumulate).
  // Returns whether it was there: a twin never is.
  #unregister(bucket: number, runAt: number): boolean {
    const table = this.#table;
    const mask = (table.length >> 1) - 1;
    let hole = hashTime(runAt) & mask;
    for (;;) {
      const found = table[2 * hole + 1]!;
      if (found === bucket) break;
      if (found === NONE) return false;
      hole = (hole + 1) & mask;
    }
    for (let slot = (hole + 1) & mask; ; slot = (slot + 1) & mask) {
      const moved = table[2 * slot + 1]!;
      if (moved === NONE) break;
      const movedAt = table[2 * slot]!;
      const home = hashTime(movedAt) & mask;
      // An entry may fill the hole when the hole lies on its probe path, between its home slot and where it is.
      if (((slot - home) & mask) >= ((slot - hole) & mask)) {
        table[2 * hole] = movedAt;
        table[2 * hole + 1] = moved;
        hole = slot;
      }
    }
    table[2 * hole + 1] = NONE;
    this.#tableCount--;
    return true;
  }

  // A bucket's first entry left and the next has a higher seq: with twins about, it may have to move down, but only
  // past a twin among its children (any other child comes after it whatever the seqs, and so does all below that
  // child). They are looked for first, so that the new first entry's seq, at a random place, is read only then.
  #resift(bucket: number): void {
    const index = this.#pos[bucket]!;
    const key = this.#key[index]!;
    const priority = this.#priority[index]!;
    const first = 8 * index + 1;
    const last = first + 8 < this.#buckets ? first + 8 : this.#buckets;
    for (let child = first; child < last; child++) {
      if (this.#key[child] === key && this.#priority[child] === priority) {
        this.#siftDown(index, bucket, key, priority, this.#seqOf[this.#head[bucket]!]!);
        return;
      }
    }
  }

  // Does a bucket of (key, priority, first seq) leave before the bucket at heap position `index`? The seq of
  // the other bucket's first entry is read only on a tie of runAt and priority, which only twins have.
  #beats(key: number, priority: number, seq: number, index: number): boolean {
    const otherKey = this.#key[index]!;
    if (key !== otherKey) return key < otherKey;
    const otherPriority = this.#priority[index]!;
    if (priority !== otherPriority) return priority > otherPriority;
    return seq < this.#seqOf[this.#head[this.#heap[index]!]!]!;
  }

  // Places the bucket at `index` or above.
  #siftUp(index: number, bucket: number, key: number, priority: number, seq: number): void {
    const heap = this.#heap;
    const keys = this.#key;
    const priorities = this.#priority;
    const pos = this.#pos;
    while (index > 0) {
      const parent = (index - 1) >> 3;
      if (!this.#beats(key, priority, seq, parent)) break;
      const parentBucket = heap[parent]!;
      heap[index] = parentBucket;
      keys[index] = keys[parent]!;
      priorities[index] = priorities[parent]!;
      pos[parentBucket] = index;
      index = parent;
    }
    heap[index] = bucket;
    keys[index] = key;
    priorities[index] = priority;
    pos[bucket] = index;
  }

  // Places the bucket at `index` or below. Priorities are read only on a runAt tie.
  #siftDown(index: number, bucket: number, key: number, priority: number, seq: number): void {
    const heap = this.#heap;
    const keys = this.#key;
    const priorities = this.#priority;
    const pos = this.#pos;
    const size = this.#buckets;
    for (;;) {
      const first = 8 * index + 1;
      if (first >= size) break;
      // The earliest of up to eight children, which sit side by side.
      let best = first;
      let bestKey = keys[first]!;
      const last = first + 8 < size ? first + 8 : size;
      for (let child = first + 1; child < last; child++) {
        const childKey = keys[child]!;
        if (childKey < bestKey || (childKey === bestKey && this.#beats(childKey, priorities[child]!, this.#seqOf[this.#head[heap[child]!]!]!, best))) {
          best = child;
          bestKey = childKey;
        }
      }
      if (this.#beats(key, priority, seq, best)) break;
      const bestBucket = heap[best]!;
      heap[index] = bestBucket;
      keys[index] = bestKey;
      priorities[index] = priorities[best]!;
      pos[bestBucket] = index;
      index = best;
    }
    heap[index] = bucket;
    keys[index] = key;
    priorities[index] = priority;
    pos[bucket] = index;
  }

  // Removes the first entry of the head bucket and returns its id.
  #popHead(): number {
    const bucket = this.#heap[0]!;
    const id = this.#head[bucket]!;
    this.#bucketOf[id] = NONE;
    this.#size--;
    const next = this.#next[id]!;
    if (next === NONE) {
      this.#dropBucket(bucket);
    } else {
      this.#head[bucket] = next;
      this.#prev[next] = NONE;
      if (this.#twins !== 0) this.#resift(bucket);
    }
    return id;
  }

  #disarm(): void {
    this.#timer?.clear();
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
  }

  #arm(): void {
    this.#disarm();
    if (!this.#started || this.#size === 0) return;
    const now = this.#clock.now();
    const delay = Math.min(Math.max(0, this.#key[0]! - now), this.#checkMs, MAX_TIMER_DELAY_MS);
    this.#armedFor = now + delay;
    this.#timer = this.#clock.setTimer(this.#fire, delay);
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    this.#firing = true;
    try {
      let now = this.#clock.now();
      let count = 0;
      while (this.#started && this.#size > 0 && count < this.#maxBatch) {
        const runAt = this.#key[0]!;
        if (runAt > now) {
          // Time moved while the batch ran: take what became due since, rather than wait for the next timer
          // turn (setTimeout rounds a 0 ms delay up to 1 ms).
          now = this.#clock.now();
          if (runAt > now) break;
        }
        const head = this.#popHead();
        count++;
        this.#onDue(head, runAt);
      }
    } finally {
      this.#firing = false;
      this.#arm();
    }
  };
}
