/**
 * The TimerQueue: every pending task of a scheduler behind ONE armed timer. Entries live in an indexed 8-ary
 * min-heap ordered by (runAt, priority descending, insertion seq), stored in typed arrays (per id: heap
 * position; per heap slot: id, runAt, priority and seq), so that a pending entry costs ~28 bytes and no object.
 */
import { MAX_TIMER_DELAY_MS, type Clock, type ClockTimer } from './clock.js';
import { InvalidInputError } from './errors.js';

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
    throw new InvalidInputError(`${what} must be a number > 0${allowInfinity ? ' (or Infinity)' : ''}, got ${String(value)}`);
  }
  return value;
}

// Among entries due at the same time: does (priorityA, seqA) leave before (priorityB, seqB)?
function tieBefore(priorityA: number, seqA: number, priorityB: number, seqB: number): boolean {
  return priorityA > priorityB || (priorityA === priorityB && seqA < seqB);
}

// Does entry A leave before entry B: earlier runAt, then higher priority, then lower seq?
function before(keyA: number, priorityA: number, seqA: number, keyB: number, priorityB: number, seqB: number): boolean {
  return keyA < keyB || (keyA === keyB && tieBefore(priorityA, seqA, priorityB, seqB));
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
 * - `push` and `remove` are O(log n).
 *
 * Ids are small non-negative integers the caller allocates densely (the scheduler reuses freed ids).
 *
 * @remarks The heap is 8-ary and keeps each entry's runAt next to its id, so that a pop, which walks
 * log4(n) levels, reads one or two cache lines per level instead of several scattered ones: with a million
 * entries that is what makes a pop cheap.
 */
export class TimerQueue {
  readonly #clock: Clock;
  readonly #onDue: (id: number, runAt: number) => void;
  readonly #checkMs: number;
  readonly #maxBatch: number;
  // Per id: its position in the heap (-1 when not queued).
  #pos = new Int32Array(INITIAL_CAPACITY).fill(-1);
  // Per heap position: the id, its runAt and its tie-break keys. Position 0 is the next due. The tie-break keys
  // move with the entry (rather than being looked up by id) because runAt ties are the common case (whole ms,
  // hundreds of tasks a ms): a comparison then reads the siblings' cache line, not two random ones per id.
  #heap = new Int32Array(INITIAL_CAPACITY);
  #key = new Float64Array(INITIAL_CAPACITY);
  #priority = new Float64Array(INITIAL_CAPACITY);
  #seq = new Float64Array(INITIAL_CAPACITY);
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
   * Queues an id.
   *
   * @param id - a non-negative integer that is not queued now
   * @param runAt - when it is due, wall-clock epoch ms
   * @param priority - higher leaves first among equal runAt
   * @param seq - lower leaves first among equal runAt and priority
   */
  push(id: number, runAt: number, priority: number, seq: number): void {
    if (id >= this.#pos.length) this.#growIds(id + 1);
    if (this.#size >= this.#heap.length) this.#growHeap();
    this.#siftUp(this.#size++, id, runAt, priority, seq);
    // Only an entry due before the armed wake-up needs a new timer; the others wait for it.
    if (this.#started && !this.#firing && runAt < this.#armedFor) this.#arm();
  }

  /**
   * Removes a queued id, in O(log n).
   *
   * @returns true when it was queued
   */
  remove(id: number): boolean {
    if (id >= this.#pos.length) return false;
    const index = this.#pos[id]!;
    if (index < 0) return false;
    this.#pos[id] = -1;
    const size = --this.#size;
    if (index < size) {
      const lastId = this.#heap[size]!;
      const lastKey = this.#key[size]!;
      const lastPriority = this.#priority[size]!;
      const lastSeq = this.#seq[size]!;
      const parent = (index - 1) >> 3;
      // The last entry fills the hole: it moves up if it beats the hole's parent, else down.
      if (index > 0 && before(lastKey, lastPriority, lastSeq, this.#key[parent]!, this.#priority[parent]!, this.#seq[parent]!)) {
        this.#siftUp(index, lastId, lastKey, lastPriority, lastSeq);
      } else {
        this.#siftDown(index, lastId, lastKey, lastPriority, lastSeq);
      }
    }
    // The timer may now be armed early for an entry that left; it fires, finds nothing due, and re-arms.
    if (size === 0) this.#disarm();
    return true;
  }

  /** Whether `id` is queued. */
  has(id: number): boolean {
    return id < this.#pos.length && this.#pos[id]! >= 0;
  }

  /**
   * The runAt of a queued id.
   *
   * @returns its runAt, or NaN when it is not queued
   */
  runAtOf(id: number): number {
    const index = id < this.#pos.length ? this.#pos[id]! : -1;
    return index < 0 ? Number.NaN : this.#key[index]!;
  }

  /** The runAt of the next entry to leave, or undefined when empty. */
  peekRunAt(): number | undefined {
    return this.#size === 0 ? undefined : this.#key[0];
  }

  #growIds(minimum: number): void {
    let capacity = this.#pos.length * 2;
    while (capacity < minimum) capacity *= 2;
    const pos = new Int32Array(capacity).fill(-1);
    pos.set(this.#pos);
    this.#pos = pos;
  }

  #growHeap(): void {
    const capacity = this.#heap.length * 2;
    const heap = new Int32Array(capacity);
    heap.set(this.#heap);
    this.#heap = heap;
    const key = new Float64Array(capacity);
    key.set(this.#key);
    this.#key = key;
    const priority = new Float64Array(capacity);
    priority.set(this.#priority);
    this.#priority = priority;
    const seq = new Float64Array(capacity);
    seq.set(this.#seq);
    this.#seq = seq;
  }

  // Places the entry at `index` or above.
  #siftUp(index: number, id: number, key: number, priority: number, seq: number): void {
    const heap = this.#heap;
    const keys = this.#key;
    const priorities = this.#priority;
    const seqs = this.#seq;
    const pos = this.#pos;
    while (index > 0) {
      const parent = (index - 1) >> 3;
      const parentKey = keys[parent]!;
      if (!before(key, priority, seq, parentKey, priorities[parent]!, seqs[parent]!)) break;
      const parentId = heap[parent]!;
      heap[index] = parentId;
      keys[index] = parentKey;
      priorities[index] = priorities[parent]!;
      seqs[index] = seqs[parent]!;
      pos[parentId] = index;
      index = parent;
    }
    heap[index] = id;
    keys[index] = key;
    priorities[index] = priority;
    seqs[index] = seq;
    pos[id] = index;
  }

  // Places the entry at `index` or below. The tie-break keys are read only on a runAt tie.
  #siftDown(index: number, id: number, key: number, priority: number, seq: number): void {
    const heap = this.#heap;
    const keys = this.#key;
    const priorities = this.#priority;
    const seqs = this.#seq;
    const pos = this.#pos;
    const size = this.#size;
    for (;;) {
      const first = 8 * index + 1;
      if (first >= size) break;
      // The earliest of up to eight children, which sit side by side.
      let best = first;
      let bestKey = keys[first]!;
      const last = first + 8 < size ? first + 8 : size;
      for (let child = first + 1; child < last; child++) {
        const childKey = keys[child]!;
        if (childKey < bestKey || (childKey === bestKey && tieBefore(priorities[child]!, seqs[child]!, priorities[best]!, seqs[best]!))) {
          best = child;
          bestKey = childKey;
        }
      }
      if (!(bestKey < key || (bestKey === key && tieBefore(priorities[best]!, seqs[best]!, priority, seq)))) break;
      const bestId = heap[best]!;
      heap[index] = bestId;
      keys[index] = bestKey;
      priorities[index] = priorities[best]!;
      seqs[index] = seqs[best]!;
      pos[bestId] = index;
      index = best;
    }
    heap[index] = id;
    keys[index] = key;
    priorities[index] = priority;
    seqs[index] = seq;
    pos[id] = index;
  }

  // Removes the head and returns its id.
  #popHead(): number {
    const head = this.#heap[0]!;
    this.#pos[head] = -1;
    const size = --this.#size;
    if (size > 0) this.#siftDown(0, this.#heap[size]!, this.#key[size]!, this.#priority[size]!, this.#seq[size]!);
    return head;
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
