/**
 * Generators (zot): sources that produce tasks one by one, pulled by the scheduler only when it has a free slot,
 * so that a generator of a million tasks holds memory for about one.
 */
import type { Clock, ClockTimer } from './clock.js';
import { createKey, normalizePriority, type PriorityInput, type ScheduleOptions, type ValueKey } from './context.js';
import { InvalidInputError } from './errors.js';
import type { TaskHandle } from './middleware.js';
import { validatePositiveMs } from './timer-queue.js';
import { quoteInput } from './quote-input.js';

/**
 * A generator with zot's four methods.
 *
 * Rules the scheduler follows: it calls `isDone()` before each pull, and `isReady()` when not done; it calls
 * `generate()` only when both allow, one call at a time (it awaits a returned promise before the next), and only
 * when a slot is free. `reset()` is called on a periodic generator `intervalMs` after it is done.
 */
export interface TaskGenerator {
  /**
   * Produces the next task's options (its priority is replaced by the generator's). `undefined` means "nothing
   * now": the scheduler asks `isDone()` and, if not done, tries again at the next check.
   */
  generate(): ScheduleOptions | undefined | Promise<ScheduleOptions | undefined>;
  /** Whether this round is over (no more tasks until `reset()`). */
  isDone(): boolean;
  /** Whether `generate()` may be called now; false skips the generator until the next check. */
  isReady(): boolean;
  /** Starts a new round (periodic generators). */
  reset(): void;
}

/**
 * What `addGenerator` takes: an async iterator or async iterable of task options, a sync iterable (an array, a
 * sync generator), or a {@link TaskGenerator}.
 */
export type GeneratorSource =
  | TaskGenerator
  | AsyncIterator<ScheduleOptions>
  | AsyncIterable<ScheduleOptions>
  | Iterable<ScheduleOptions>;

/** Options of `scheduler.addGenerator()`. */
export interface GeneratorOptions {
  /** The priority every task of the generator is scheduled at (the items' own priority is ignored). @defaultValue 0 */
  priority?: PriorityInput;
  /**
   * Makes the generator periodic: `intervalMs` after a round is done, it is reset (`reset()`, or a fresh iterator
   * of the iterable) and pulled again. A number of ms > 0. @defaultValue none: the generator runs one round
   */
  intervalMs?: number;
  /** How long a generator that is not ready (or whose `generate()` returned nothing or threw) waits before it is asked again, besides each slot release. @defaultValue 1000 */
  readyCheckMs?: number;
  /** A name for events and errors. @defaultValue `generator-<n>` */
  name?: string;
  /**
   * Where the generator stands among the others when slots free up.
   *
   * - `'aged'`: ordered with the other `'aged'` generators by `priority + msSinceLastPull / agingMs`.
   * - `'first'`: pulled before every `'aged'` generator whenever it is ready, whatever their priority and aging
   *   (several `'first'` generators are ordered among themselves the aged way). While it is ready, an `'aged'`
   *   generator gets only the slots that are left after its pulls.
   *
   * @defaultValue `'aged'`
   * @remarks `'first'` is for a system generator whose items are tasks that are due already, such as the storage
   * middleware's claimer of the backlog (tasks overdue at a restart, or due tasks this node does not hold): the
   * guide promises that a due task waiting for a slot gets it before a generator is pulled, and a user's
   * generator at a high priority would otherwise take every slot until it ran dry. A user's generator rarely
   * needs it: a `'first'` generator that is always ready starves every `'aged'` one.
   */
  precedence?: 'first' | 'aged';
  /**
   * For a generator that schedules tasks itself rather than returning them from `generate()`: how many run slots
   * its own tasks will take (those it is fetching, and those it scheduled that have not started). Other
   * generators are pulled only into the free slots beyond them, so that none fills a slot in the window between
   * this generator's pull and its tasks reaching the scheduler. Called at each pull decision: keep it cheap. A
   * call that throws counts as 0 and is reported (`generator:error`).
   *
   * @defaultValue none: the generator holds no slot beyond the items it returned
   * @remarks The pool is not told when the count drops: the other generators are pulled at the next slot
   * release, `wake()`, or check timer (`readyCheckMs`) of any generator. The storage backlog sets it to the
   * tasks it has claimed and not started, with precedence `'first'`.
   */
  heldSlots?: () => number;
}

/** The handle `addGenerator` returns. */
export interface GeneratorHandle {
  /** The generator's name. */
  readonly name: string;
  /** How many items were pulled from it so far (over all rounds). */
  readonly pulled: number;
  /** Whether its current round is done (a periodic generator starts the next one after `intervalMs`). */
  readonly done: boolean;
  /** Whether `remove()` was called (or the scheduler stopped). */
  readonly removed: boolean;
  /**
   * Stops pulling from the generator; tasks it already produced go on. An item whose pull was in flight when
   * `remove()` was called is still scheduled. An iterator's `return()` is called so that its `finally` blocks run.
   */
  remove(): void;
  /**
   * Asks the generator again now, rather than at its next check: for a TaskGenerator that has just learned it has
   * work (its `isReady()` turned true). It is pulled as soon as a slot is free. Does nothing once removed, nor
   * while a round is done and waits for its interval.
   */
  wake(): void;
}

/** What the pool needs from its scheduler. @internal */
export interface GeneratorHost {
  /** The scheduler's clock. */
  readonly clock: Clock;
  /** The dispatcher's aging rate (generators age the same way among themselves). */
  readonly agingMs: number;
  /** Slots that could start a run now (0 while not started or stopping): concurrency minus runs in progress. */
  freeSlots(): number;
  /** Schedules a task through the whole middleware chain. */
  schedule(options: ScheduleOptions): Promise<TaskHandle>;
  /** Reports an error of a generator. */
  reportError(name: string, error: unknown): void;
  /** Reports the end of a round. */
  reportDone(name: string, round: number): void;
}

/**
 * Held by each pulled item from the pull until its run starts (or its task ends without running, or its
 * schedule failed): the pool pulls only while `running + reserved < concurrency`.
 *
 * @internal
 */
export class GeneratorReservation {
  #release: (() => void) | undefined;

  /** @param release - called by the first {@link GeneratorReservation.release} */
  constructor(release: () => void) {
    this.#release = release;
  }

  /** Frees the reservation; later calls do nothing. */
  release(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }
}

/** The context value through which the scheduler tells the pool that a generated task started. @internal */
export const GeneratorReservationKey: ValueKey<GeneratorReservation> = createKey<GeneratorReservation>('generatorReservation');

// At most this many pulls per turn; the rest continue on the next timer turn, so that a synchronous generator and
// unlimited concurrency cannot block the event loop.
const PULLS_PER_TURN = 1000;

type Kind = 'object' | 'iterator';

function isObject(value: unknown): value is object {
  return value !== null && (typeof value === 'object' || typeof value === 'function');
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return isObject(value) && typeof (value as { then?: unknown }).then === 'function';
}

function isTaskGenerator(source: unknown): source is TaskGenerator {
  const g = source as Partial<TaskGenerator>;
  return typeof g.generate === 'function' && typeof g.isDone === 'function' && typeof g.isReady === 'function' && typeof g.reset === 'function';
}

type AnyIterator = AsyncIterator<ScheduleOptions> | Iterator<ScheduleOptions>;

// A fresh iterator of an (async) iterable, or undefined when `source` is not one.
function openIterator(source: unknown): AnyIterator | undefined {
  const asyncFactory = (source as Partial<AsyncIterable<ScheduleOptions>>)[Symbol.asyncIterator];
  const syncFactory = (source as Partial<Iterable<ScheduleOptions>>)[Symbol.iterator];
  const factory: ((this: unknown) => unknown) | undefined =
    typeof asyncFactory === 'function' ? asyncFactory : typeof syncFactory === 'function' ? syncFactory : undefined;
  if (factory === undefined) return undefined;
  const iterator: unknown = factory.call(source);
  if (!isObject(iterator) || typeof (iterator as Partial<AnyIterator>).next !== 'function') {
    throw new InvalidInputError('a generator\'s [Symbol.asyncIterator]() / [Symbol.iterator]() did not return an iterator');
  }
  return iterator as AnyIterator;
}

/** One registered generator. */
class Entry implements GeneratorHandle {
  readonly name: string;
  readonly priority: number;
  readonly intervalMs: number | undefined;
  readonly readyCheckMs: number;
  readonly first: boolean;
  readonly heldSlots: (() => number) | undefined;
  // What heldSlots() returned at the current pick.
  holding = 0;
  readonly kind: Kind;
  readonly generator: TaskGenerator | undefined;
  // An iterable that can start over (periodic), or undefined for a bare iterator.
  readonly iterable: AsyncIterable<ScheduleOptions> | Iterable<ScheduleOptions> | undefined;
  iterator: AnyIterator | undefined;
  pulled = 0;
  round = 1;
  done = false;
  removed = false;
  pulling = false;
  // Not ready (or generate() gave nothing / threw): skipped until the check timer or a slot release.
  waitingForCheck = false;
  lastServed: number;
  timer: ClockTimer | undefined = undefined;

  constructor(
    readonly pool: GeneratorPool,
    source: GeneratorSource,
    options: GeneratorOptions,
    name: string,
    now: number,
  ) {
    this.name = name;
    this.priority = normalizePriority(options.priority);
    this.intervalMs = options.intervalMs === undefined ? undefined : validatePositiveMs(options.intervalMs, 'intervalMs', false);
    this.readyCheckMs = validatePositiveMs(options.readyCheckMs ?? 1000, 'readyCheckMs', false);
    const precedence: unknown = options.precedence ?? 'aged';
    if (precedence !== 'first' && precedence !== 'aged') throw new InvalidInputError(`generator ${quoteInput(name)}: precedence must be 'first' or 'aged', got ${quoteInput(precedence)}`);
    this.first = precedence === 'first';
    if (options.heldSlots !== undefined && typeof options.heldSlots !== 'function') throw new InvalidInputError(`generator ${quoteInput(name)}: heldSlots must be a function`);
    this.heldSlots = options.heldSlots;
    this.lastServed = now;
    if (isTaskGenerator(source)) {
      this.kind = 'object';
      this.generator = source;
      this.iterable = undefined;
      return;
    }
    this.kind = 'iterator';
    this.generator = undefined;
    const iterator = openIterator(source);
    if (iterator !== undefined) {
      // A generator object is its own iterable and cannot start over: periodic needs an iterable that can.
      const restartable = iterator !== (source as unknown);
      if (this.intervalMs !== undefined && !restartable) {
        throw new InvalidInputError(`generator ${quoteInput(name)}: a periodic generator needs an iterable that returns a fresh iterator each time, or the four methods of TaskGenerator; a generator object cannot start over`);
      }
      this.iterable = restartable ? (source as AsyncIterable<ScheduleOptions> | Iterable<ScheduleOptions>) : undefined;
      this.iterator = iterator;
      return;
    }
    if (typeof (source as Partial<AnyIterator>).next === 'function') {
      if (this.intervalMs !== undefined) throw new InvalidInputError(`generator ${quoteInput(name)}: a bare iterator cannot start over; a periodic generator needs an iterable or a TaskGenerator`);
      this.iterable = undefined;
      this.iterator = source as AnyIterator;
      return;
    }
    throw new InvalidInputError('a generator must be an async iterator, an (async) iterable, or an object with generate, isDone, isReady and reset');
  }

  remove(): void {
    this.pool.remove(this);
  }

  wake(): void {
    // A finished round waits for its interval (the timer then is the periodic reset): nothing to ask.
    if (this.removed || this.done) return;
    this.waitingForCheck = false;
    this.timer?.clear();
    this.timer = undefined;
    this.pool.wake();
  }
}

/**
 * The generators of one scheduler.
 *
 * Rules:
 * - The pool pulls only while the scheduler has a free slot that no pulled item already claims:
 *   `running + reserved < concurrency`, where an item is reserved from its pull until its run starts. So at most
 *   `concurrency` items of all generators are pulled and not finished, whatever their size.
 * - A ready generator of precedence `'first'` is pulled before every `'aged'` one. Among ready generators of the
 *   same precedence, the one with the highest `priority + (ms since it was last pulled) / agingMs` is pulled
 *   first, so a generator at a low priority still gets slots under a busy high one.
 * - A generator is pulled only while a slot is free beyond the `heldSlots` of the other generators.
 * - At most one pull of a generator is in flight at a time.
 * - A pull that throws (or rejects), an item that is not an object, and an item that `schedule()` refuses are
 *   reported (`generator:error`) and never stop the scheduler. An iterator that threw is done; a TaskGenerator
 *   is asked again at the next check.
 *
 * @internal
 */
export class GeneratorPool {
  readonly #host: GeneratorHost;
  readonly #entries: Entry[] = [];
  #reserved = 0;
  #wakeQueued = false;
  #pumping = false;
  #turnTimer: ClockTimer | undefined = undefined;
  #stopped = false;
  #count = 0;

  /** @param host - the scheduler */
  constructor(host: GeneratorHost) {
    this.#host = host;
  }

  /** Items pulled and not started yet (plus pulls in flight). */
  get reserved(): number {
    return this.#reserved;
  }

  /**
   * Adds a generator and starts pulling from it when slots are free.
   *
   * @throws {@link InvalidInputError} on an invalid source or option
   */
  add(source: GeneratorSource, options: GeneratorOptions = {}): GeneratorHandle {
    if (!isObject(source)) throw new InvalidInputError('a generator must be an async iterator, an (async) iterable, or an object with generate, isDone, isReady and reset');
    if (options === null || typeof options !== 'object') throw new InvalidInputError('generator options must be an object');
    const name = options.name ?? `generator-${++this.#count}`;
    if (typeof name !== 'string' || name === '') throw new InvalidInputError('a generator name must be a non-empty string');
    const entry = new Entry(this, source, options, name, this.#host.clock.now());
    if (this.#stopped) {
      entry.removed = true;
      this.#close(entry);
      return entry;
    }
    this.#entries.push(entry);
    this.wake();
    return entry;
  }

  /** Removes a generator (see {@link GeneratorHandle.remove}). */
  remove(entry: Entry): void {
    if (entry.removed) return;
    entry.removed = true;
    entry.timer?.clear();
    entry.timer = undefined;
    const index = this.#entries.indexOf(entry);
    if (index >= 0) this.#entries.splice(index, 1);
    if (!entry.pulling) this.#close(entry);
  }

  /** Stops every generator (the scheduler stops). */
  stop(): void {
    this.#stopped = true;
    this.#turnTimer?.clear();
    for (const entry of [...this.#entries]) this.remove(entry);
  }

  /** Something changed (a reservation freed, a check is due): pull what fits, soon. Coalesces many calls into one pump. */
  wake(): void {
    // A wake from inside the pump (a synchronous pull settling) needs nothing: the pump's loop looks again.
    if (this.#stopped || this.#wakeQueued || this.#pumping) return;
    this.#wakeQueued = true;
    queueMicrotask(() => {
      this.#wakeQueued = false;
      this.#pump();
    });
  }

  /**
   * A run ended and freed its slot: generators skipped until the next check (not ready, nothing to give, or an
   * error) are asked again, and what fits is pulled.
   */
  slotReleased(): void {
    if (this.#stopped) return;
    for (const entry of this.#entries) entry.waitingForCheck = false;
    this.wake();
  }

  #pump(): void {
    if (this.#stopped) return;
    this.#pumping = true;
    try {
      for (let pulls = 0; pulls < PULLS_PER_TURN; pulls++) {
        const free = this.#host.freeSlots() - this.#reserved;
        if (free <= 0) return;
        const entry = this.#pick(free);
        if (entry === undefined) return;
        this.#pull(entry);
      }
    } finally {
      this.#pumping = false;
    }
    if (this.#turnTimer === undefined) {
      this.#turnTimer = this.#host.clock.setTimer(() => {
        this.#turnTimer = undefined;
        this.wake();
      }, 0);
    }
  }

  // The ready generator with the highest aged priority, a 'first' one before every 'aged' one; or undefined.
  // `free`: the slots free and not reserved by pulled items.
  #pick(free: number): Entry | undefined {
    const now = this.#host.clock.now();
    const agingMs = this.#host.agingMs;
    let held = 0;
    for (const entry of this.#entries) held += entry.holding = this.#held(entry);
    let best: Entry | undefined;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const entry of this.#entries) {
      if (entry.pulling || entry.done || entry.removed || entry.waitingForCheck) continue;
      // The slots other generators hold for their own tasks are not this one's to fill.
      if (free - (held - entry.holding) <= 0) continue;
      if (!this.#ready(entry)) continue;
      const waited = Math.max(0, now - entry.lastServed);
      const score = entry.priority + (Number.isFinite(agingMs) ? waited / agingMs : 0);
      const beats =
        best === undefined ||
        (entry.first !== best.first ? entry.first : score > bestScore || (score === bestScore && entry.lastServed < best.lastServed));
      if (beats) {
        best = entry;
        bestScore = score;
      }
    }
    return best;
  }

  // What a generator's heldSlots() says: 0 without one, or when it throws (reported) or returns no positive number.
  #held(entry: Entry): number {
    const heldSlots = entry.heldSlots;
    if (heldSlots === undefined) return 0;
    try {
      const count = heldSlots();
      return typeof count === 'number' && count > 0 ? count : 0;
    } catch (error) {
      this.#host.reportError(entry.name, error);
      return 0;
    }
  }

  // Asks a TaskGenerator isDone / isReady (an iterator is always ready); arms the check timer when not ready.
  #ready(entry: Entry): boolean {
    const generator = entry.generator;
    if (generator === undefined) return true;
    try {
      if (generator.isDone()) {
        this.#finish(entry);
        return false;
      }
      if (generator.isReady()) {
        entry.waitingForCheck = false;
        return true;
      }
    } catch (error) {
      this.#host.reportError(entry.name, error);
    }
    this.#checkLater(entry);
    return false;
  }

  #askDone(entry: Entry): void {
    try {
      if (entry.generator!.isDone()) this.#finish(entry);
    } catch (error) {
      this.#host.reportError(entry.name, error);
    }
  }

  #checkLater(entry: Entry): void {
    entry.waitingForCheck = true;
    if (entry.timer !== undefined || entry.removed) return;
    entry.timer = this.#host.clock.setTimer(() => {
      entry.timer = undefined;
      entry.waitingForCheck = false;
      this.wake();
    }, entry.readyCheckMs);
  }

  #pull(entry: Entry): void {
    entry.pulling = true;
    entry.lastServed = this.#host.clock.now();
    this.#reserved++;
    let result: unknown;
    try {
      result = entry.kind === 'object' ? entry.generator!.generate() : entry.iterator!.next();
    } catch (error) {
      this.#pulled(entry, false, error);
      return;
    }
    if (isThenable(result)) {
      void Promise.resolve(result).then(
        (value) => this.#pulled(entry, true, value),
        (error: unknown) => this.#pulled(entry, false, error),
      );
    } else {
      this.#pulled(entry, true, result);
    }
  }

  // A pull settled: schedule its item, or end the round, or report the error.
  #pulled(entry: Entry, ok: boolean, value: unknown): void {
    entry.pulling = false;
    let item: unknown;
    if (!ok) {
      this.#unreserve();
      this.#host.reportError(entry.name, value);
      if (entry.kind === 'iterator') this.#finish(entry);
      else this.#checkLater(entry);
    } else if (entry.kind === 'iterator') {
      const step = value as IteratorResult<ScheduleOptions> | undefined;
      if (!isObject(step)) {
        this.#unreserve();
        this.#host.reportError(entry.name, new InvalidInputError(`generator ${quoteInput(entry.name)}: next() returned ${quoteInput(step)}, not an iterator result`));
        this.#finish(entry);
      } else if (step.done === true) {
        this.#unreserve();
        this.#finish(entry);
      } else {
        item = step.value;
      }
    } else if (value === undefined) {
      this.#unreserve();
      // Nothing now: done, or try again at the next check.
      this.#ready(entry);
      if (!entry.done && !entry.waitingForCheck) this.#checkLater(entry);
    } else {
      item = value;
    }
    if (item !== undefined) {
      this.#submit(entry, item);
      // Known at once rather than at the next free slot: a periodic generator's interval starts when its last item is pulled.
      if (entry.generator !== undefined) this.#askDone(entry);
    }
    if (entry.removed) this.#close(entry);
    this.wake();
  }

  #submit(entry: Entry, item: unknown): void {
    entry.pulled++;
    if (!isObject(item)) {
      this.#unreserve();
      this.#host.reportError(entry.name, new InvalidInputError(`generator ${quoteInput(entry.name)} produced ${quoteInput(item)}, not schedule options`));
      return;
    }
    const options = item as ScheduleOptions;
    const reservation = new GeneratorReservation(() => this.#unreserve());
    let scheduled: Promise<TaskHandle>;
    try {
      scheduled = this.#host.schedule({
        ...options,
        priority: entry.priority,
        values: [...(options.values ?? []), [GeneratorReservationKey, reservation]],
      });
    } catch (error) {
      reservation.release();
      this.#host.reportError(entry.name, error);
      return;
    }
    void scheduled.then(
      (handle) => {
        // The core releases the reservation when the run starts; this covers a task that ends without running
        // (cancelled) or that a middleware kept from the core.
        const release = (): void => reservation.release();
        void handle.result.then(release, release);
      },
      (error: unknown) => {
        reservation.release();
        this.#host.reportError(entry.name, error);
      },
    );
  }

  #unreserve(): void {
    this.#reserved--;
    this.wake();
  }

  // A round is over: report it, and for a periodic generator start the next round after intervalMs.
  #finish(entry: Entry): void {
    if (entry.done) return;
    entry.done = true;
    entry.timer?.clear();
    entry.timer = undefined;
    this.#host.reportDone(entry.name, entry.round);
    if (entry.intervalMs === undefined || entry.removed) return;
    entry.timer = this.#host.clock.setTimer(() => {
      entry.timer = undefined;
      if (entry.removed) return;
      try {
        if (entry.generator !== undefined) entry.generator.reset();
        else entry.iterator = openIterator(entry.iterable);
      } catch (error) {
        this.#host.reportError(entry.name, error);
        // Try the reset again at the next interval rather than pull from a half-reset generator.
        entry.done = false;
        this.#finish(entry);
        return;
      }
      entry.round++;
      entry.done = false;
      entry.waitingForCheck = false;
      this.wake();
    }, entry.intervalMs);
  }

  // Lets an iterator run its finally blocks; its errors are reported.
  #close(entry: Entry): void {
    const iterator = entry.iterator;
    if (iterator === undefined || typeof iterator.return !== 'function' || entry.done) return;
    try {
      const result: unknown = iterator.return();
      if (isThenable(result)) void Promise.resolve(result).then(undefined, (error: unknown) => this.#host.reportError(entry.name, error));
    } catch (error) {
      this.#host.reportError(entry.name, error);
    }
  }
}
