/**
 * The Dispatcher: turns due tasks into runs under a concurrency limit. When every slot is taken, due tasks wait
 * in a ready queue ordered by effective priority, which ages so that no priority starves.
 */
import type { Clock } from './clock.js';
import { InvalidInputError } from './errors.js';

/** Options of a {@link Dispatcher}. */
export interface DispatcherOptions {
  /** Where time comes from (the ready time of waiting tasks). */
  clock: Clock;
  /**
   * How many runs may be in progress at once: an integer ≥ 1, or `Infinity`.
   *
   * @defaultValue 10
   */
  concurrency?: number;
  /**
   * How fast a waiting task's priority grows: `priority + waitedMs / agingMs`. `Infinity` turns aging off.
   *
   * @defaultValue 10000 (a task gains one priority point per 10 s of waiting)
   */
  agingMs?: number;
  /** Starts the run of `id`; the dispatcher counts it as running until {@link Dispatcher.release} is called. */
  start: (id: number) => void;
}

/**
 * Validates a concurrency limit.
 *
 * @returns the limit
 * @throws {@link InvalidInputError} when it is not an integer ≥ 1 or Infinity
 */
export function validateConcurrency(value: number): number {
  if (value !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(value) || value < 1)) {
    throw new InvalidInputError(`concurrency must be an integer ≥ 1 or Infinity, got ${String(value)}`);
  }
  return value;
}

/** A due task waiting for a slot. */
class Waiting {
  /** false once cancelled (removed lazily from the heap). */
  live = true;
  constructor(
    readonly id: number,
    readonly seq: number,
    readonly runAt: number,
    // priority - readyAt / agingMs: since every waiting task ages at the same rate, comparing effective
    // priorities at any moment is comparing this fixed key, so a plain heap keeps the aged order.
    readonly key: number,
  ) {}
}

function before(a: Waiting, b: Waiting): boolean {
  if (a.key !== b.key) return a.key > b.key;
  if (a.runAt !== b.runAt) return a.runAt < b.runAt;
  return a.seq < b.seq;
}

/**
 * A concurrency limit with a priority-ordered, aging ready queue.
 *
 * Rules:
 * - At most `concurrency` runs are in progress; a due task beyond that waits.
 * - A free slot goes to the waiting task with the highest effective priority (`priority + waitedMs / agingMs`),
 *   then the earlier runAt, then the earlier seq; so a low priority task waiting long enough beats any stream
 *   of fresh higher ones.
 * - While paused, nothing starts; due tasks wait.
 */
export class Dispatcher {
  readonly #clock: Clock;
  readonly #concurrency: number;
  readonly #agingMs: number;
  readonly #start: (id: number) => void;
  readonly #base: number;
  readonly #heap: Waiting[] = [];
  readonly #waiting = new Map<number, Waiting>();
  #cancelled = 0;
  #running = 0;
  #paused = true;
  #draining = false;

  /**
   * @param options - limit, aging and the start callback
   * @throws {@link InvalidInputError} on an invalid concurrency or agingMs
   */
  constructor(options: DispatcherOptions) {
    this.#clock = options.clock;
    this.#concurrency = validateConcurrency(options.concurrency ?? 10);
    const agingMs = options.agingMs ?? 10_000;
    if (typeof agingMs !== 'number' || Number.isNaN(agingMs) || agingMs <= 0) {
      throw new InvalidInputError(`agingMs must be a number > 0 (or Infinity), got ${String(agingMs)}`);
    }
    this.#agingMs = agingMs;
    this.#start = options.start;
    // Keys are relative to this base so that they stay small and precise.
    this.#base = options.clock.now();
  }

  /** Runs in progress. */
  get running(): number {
    return this.#running;
  }

  /** Due tasks waiting for a slot. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** The concurrency limit. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** Lets runs start (and starts waiting tasks while slots are free). */
  resume(): void {
    this.#paused = false;
    this.#drain();
  }

  /** Stops starting runs; runs in progress go on, due tasks wait. */
  pause(): void {
    this.#paused = true;
  }

  /**
   * A task is due: start it now when a slot is free, else queue it.
   *
   * @param id - the task's id
   * @param priority - its priority
   * @param runAt - when it was due
   * @param seq - its insertion order
   */
  submit(id: number, priority: number, runAt: number, seq: number): void {
    if (!this.#paused && this.#running < this.#concurrency && this.#waiting.size === 0) {
      this.#running++;
      this.#start(id);
      return;
    }
    const readyAt = this.#clock.now() - this.#base;
    const entry = new Waiting(id, seq, runAt, priority - readyAt / this.#agingMs);
    this.#waiting.set(id, entry);
    this.#push(entry);
    this.#drain();
  }

  /**
   * Removes a waiting task (cancel).
   *
   * @returns true when it was waiting
   */
  remove(id: number): boolean {
    const entry = this.#waiting.get(id);
    if (entry === undefined) return false;
    entry.live = false;
    this.#waiting.delete(id);
    // Removal is lazy; rebuild once dead entries are the majority, so memory stays bounded by 2× the waiting.
    if (++this.#cancelled > 32 && this.#cancelled * 2 > this.#heap.length) this.#compact();
    return true;
  }

  /** Whether `id` is waiting for a slot. */
  isWaiting(id: number): boolean {
    return this.#waiting.has(id);
  }

  /** A run ended: frees its slot and starts the next waiting task. */
  release(): void {
    this.#running--;
    this.#drain();
  }

  #drain(): void {
    // A run that ends synchronously releases its slot from inside start(); the outer loop picks the next task,
    // so the stack does not grow with the number of waiting tasks.
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#paused && this.#running < this.#concurrency && this.#heap.length > 0) {
        const entry = this.#pop();
        if (!entry.live) {
          this.#cancelled--;
          continue;
        }
        this.#waiting.delete(entry.id);
        this.#running++;
        this.#start(entry.id);
      }
    } finally {
      this.#draining = false;
    }
  }

  #compact(): void {
    const live = this.#heap.filter((entry) => entry.live);
    this.#heap.length = 0;
    this.#cancelled = 0;
    for (const entry of live) this.#push(entry);
  }

  #push(entry: Waiting): void {
    const heap = this.#heap;
    let index = heap.length;
    heap.push(entry);
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!before(entry, parent)) break;
      heap[index] = parent;
      index = parentIndex;
    }
    heap[index] = entry;
  }

  #pop(): Waiting {
    const heap = this.#heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let index = 0;
      const size = heap.length;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= size) break;
        let child = left;
        if (left + 1 < size && before(heap[left + 1]!, heap[left]!)) child = left + 1;
        if (!before(heap[child]!, last)) break;
        heap[index] = heap[child]!;
        index = child;
      }
      heap[index] = last;
    }
    return top;
  }
}
