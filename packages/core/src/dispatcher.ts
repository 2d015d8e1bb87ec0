/**
 * The Dispatcher: turns due tasks into runs under a concurrency limit. When every slot is taken, due tasks wait
 * in a ready queue ordered by effective priority, which ages so that no priority starves.
 */
import type { Clock } from './clock.js';
import { InvalidInputError } from './errors.js';
import { quoteInput } from './quote-input.js';

/** Options of a {@link Dispatcher}. */
/** The default aging of a ready queue: a waiting task gains one priority point per 10 s. */
export const DEFAULT_AGING_MS = 10_000;

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
    throw new InvalidInputError(`concurrency must be an integer ≥ 1 or Infinity, got ${quoteInput(value)}`);
  }
  return value;
}

/** A due task waiting for a slot. */
class Waiting {
  /** false once cancelled (removed lazily from its heap). */
  live = true;
  /** true while it sits in its work's blocked heap (its work is at its concurrency limit). */
  blocked = false;
  constructor(
    readonly id: number,
    readonly seq: number,
    readonly runAt: number,
    // priority - readyAt / agingMs: since every waiting task ages at the same rate, comparing effective
    // priorities at any moment is comparing this fixed key, so a plain heap keeps the aged order.
    readonly key: number,
    readonly workId: string | undefined,
  ) {}
}

function before(a: Waiting, b: Waiting): boolean {
  if (a.key !== b.key) return a.key > b.key;
  if (a.runAt !== b.runAt) return a.runAt < b.runAt;
  return a.seq < b.seq;
}

/** A binary heap of waiting entries in {@link before} order, with lazily removed (dead) entries. */
class WaitingHeap {
  readonly items: Waiting[] = [];
  /** Dead entries still in `items`. */
  dead = 0;

  get size(): number {
    return this.items.length;
  }

  /** Counts one more dead entry; rebuilds once dead entries are the majority, so memory stays bounded by 2× the live. */
  markDead(): void {
    if (++this.dead > 32 && this.dead * 2 > this.items.length) {
      const live = this.items.filter((entry) => entry.live);
      this.items.length = 0;
      this.dead = 0;
      for (const entry of live) this.push(entry);
    }
  }

  push(entry: Waiting): void {
    const heap = this.items;
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

  pop(): Waiting {
    const heap = this.items;
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

/**
 * A concurrency limit with a priority-ordered, aging ready queue, and optional limits per work.
 *
 * Rules:
 * - At most `concurrency` runs are in progress; a due task beyond that waits.
 * - At most `workLimit(workId)` runs of one work (tasks submitted with that `workId`) are in progress; a due task
 *   whose work is at its limit waits aside, and does not hold up tasks of other works behind it (no head-of-line
 *   blocking): free slots go to the best task whose work is below its limit.
 * - A free slot goes to the runnable waiting task with the highest effective priority
 *   (`priority + waitedMs / agingMs`), then the earlier runAt, then the earlier seq; so a low priority task
 *   waiting long enough beats any stream of fresh higher ones. A task set aside for its work's limit keeps its
 *   place in that order when its work frees a slot.
 * - While paused, nothing starts; due tasks wait.
 */
export class Dispatcher {
  readonly #clock: Clock;
  readonly #concurrency: number;
  readonly #agingMs: number;
  readonly #start: (id: number) => void;
  readonly #base: number;
  // Runnable (as far as their work's limit is known) waiting tasks.
  readonly #ready = new WaitingHeap();
  // Waiting tasks whose work was at its limit when their turn came, by workId.
  readonly #blocked = new Map<string, WaitingHeap>();
  readonly #waiting = new Map<number, Waiting>();
  // Per-work limits, and runs in progress per workId (kept for every workId, so that a limit set later counts right).
  readonly #limits = new Map<string, number>();
  readonly #runningByWork = new Map<string, number>();
  #blockedCount = 0;
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
    const agingMs = options.agingMs ?? DEFAULT_AGING_MS;
    if (typeof agingMs !== 'number' || Number.isNaN(agingMs) || agingMs <= 0) {
      throw new InvalidInputError(`agingMs must be a number > 0 (or Infinity), got ${quoteInput(agingMs)}`);
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

  /** Due tasks waiting for a slot (including those waiting for their work's limit). */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** The concurrency limit. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** The aging rate: a waiting task gains one priority point per `agingMs`. */
  get agingMs(): number {
    return this.#agingMs;
  }

  /** Whether runs may start (`resume()` was called and `pause()` was not since). */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Sets (or, with `undefined` or `Infinity`, removes) the limit of runs of one work in progress at once. Raising
   * a limit starts waiting tasks of that work at once when slots are free; lowering it stops no run in progress.
   *
   * @param workId - the work
   * @param limit - an integer ≥ 1, `Infinity` or `undefined` (no limit)
   * @throws {@link InvalidInputError} when `workId` is not a non-empty string or `limit` is not an integer ≥ 1 or Infinity
   */
  setWorkLimit(workId: string, limit: number | undefined): void {
    if (typeof workId !== 'string' || workId === '') throw new InvalidInputError('workId must be a non-empty string');
    if (limit === undefined || validateConcurrency(limit) === Number.POSITIVE_INFINITY) this.#limits.delete(workId);
    else this.#limits.set(workId, limit);
    this.#unblock(workId);
    this.#drain();
  }

  /**
   * @param workId - the work
   * @returns the limit of runs of that work at once; `Infinity` when it has none
   */
  workLimit(workId: string): number {
    return this.#limits.get(workId) ?? Number.POSITIVE_INFINITY;
  }

  /**
   * @param workId - the work
   * @returns how many runs of that work are in progress
   */
  runningOf(workId: string): number {
    return this.#runningByWork.get(workId) ?? 0;
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
   * A task is due: start it now when a slot is free (and its work is below its limit), else queue it.
   *
   * @param id - the task's id
   * @param priority - its priority
   * @param runAt - when it was due
   * @param seq - its insertion order
   * @param workId - its work, for the per-work limits; pass the same value to {@link Dispatcher.release}
   */
  submit(id: number, priority: number, runAt: number, seq: number, workId?: string): void {
    const atLimit = workId !== undefined && this.#atLimit(workId);
    if (!this.#paused && this.#running < this.#concurrency && this.#waiting.size === this.#blockedCount && !atLimit) {
      this.#startRun(id, workId);
      return;
    }
    // A task ages from its due time, as the database's claim order ages it (a task claimed from a backlog it had
    // waited in keeps the priority it earned there): never from later than now.
    const readyAt = Math.min(runAt, this.#clock.now()) - this.#base;
    const entry = new Waiting(id, seq, runAt, priority - readyAt / this.#agingMs, workId);
    this.#waiting.set(id, entry);
    if (atLimit) {
      this.#block(entry);
      return;
    }
    this.#ready.push(entry);
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
    if (entry.blocked) {
      this.#blockedCount--;
      this.#blocked.get(entry.workId!)?.markDead();
    } else {
      this.#ready.markDead();
    }
    return true;
  }

  /** Whether `id` is waiting for a slot. */
  isWaiting(id: number): boolean {
    return this.#waiting.has(id);
  }

  /**
   * A run ended: frees its slot (and its work's) and starts the next waiting task.
   *
   * @param workId - the `workId` the run was submitted with
   */
  release(workId?: string): void {
    this.#running--;
    if (workId !== undefined) {
      const count = (this.#runningByWork.get(workId) ?? 1) - 1;
      if (count <= 0) this.#runningByWork.delete(workId);
      else this.#runningByWork.set(workId, count);
      if (this.#blocked.has(workId)) this.#unblock(workId);
    }
    this.#drain();
  }

  #atLimit(workId: string): boolean {
    const limit = this.#limits.get(workId);
    return limit !== undefined && (this.#runningByWork.get(workId) ?? 0) >= limit;
  }

  #startRun(id: number, workId: string | undefined): void {
    this.#running++;
    if (workId !== undefined) this.#runningByWork.set(workId, (this.#runningByWork.get(workId) ?? 0) + 1);
    this.#start(id);
  }

  #block(entry: Waiting): void {
    const workId = entry.workId!;
    entry.blocked = true;
    this.#blockedCount++;
    let heap = this.#blocked.get(workId);
    if (heap === undefined) {
      heap = new WaitingHeap();
      this.#blocked.set(workId, heap);
    }
    heap.push(entry);
  }

  // Moves as many waiting tasks of a work back to the ready heap as the work has room for. Their keys are fixed,
  // so they take their aged place among the others.
  #unblock(workId: string): void {
    const heap = this.#blocked.get(workId);
    if (heap === undefined) return;
    let room = this.workLimit(workId) - this.runningOf(workId);
    while (room > 0 && heap.size > 0) {
      const entry = heap.pop();
      if (!entry.live) {
        heap.dead--;
        continue;
      }
      entry.blocked = false;
      this.#blockedCount--;
      this.#ready.push(entry);
      room--;
    }
    if (heap.size === 0) this.#blocked.delete(workId);
  }

  #drain(): void {
    // A run that ends synchronously releases its slot from inside start(); the outer loop picks the next task,
    // so the stack does not grow with the number of waiting tasks.
    if (this.#draining) return;
    this.#draining = true;
    try {
      const ready = this.#ready;
      while (!this.#paused && this.#running < this.#concurrency && ready.size > 0) {
        const entry = ready.pop();
        if (!entry.live) {
          ready.dead--;
          continue;
        }
        if (entry.workId !== undefined && this.#atLimit(entry.workId)) {
          this.#block(entry);
          continue;
        }
        this.#waiting.delete(entry.id);
        this.#startRun(entry.id, entry.workId);
      }
    } finally {
      this.#draining = false;
    }
  }
}
