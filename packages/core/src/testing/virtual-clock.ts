/**
 * A clock that tests move by hand: no test ever sleeps for time-dependent logic.
 */
import type { Clock, ClockTimer } from '../clock.js';
import { InvalidInputError } from '../errors.js';

/** Options of a {@link VirtualClock}. */
export interface VirtualClockOptions {
  /** The wall-clock time to start at, epoch ms or a Date. @defaultValue 2026-01-01T00:00:00Z */
  now?: number | Date;
  /** How many event-loop turns `advance()` lets pass after each timer it fires, so that async chains settle. @defaultValue 5 */
  flushTurns?: number;
}

interface VirtualTimer {
  readonly id: number;
  readonly dueAt: number;
  readonly callback: () => void;
}

/**
 * A {@link Clock} driven by the test. It keeps two axes: the wall clock (`now()`), and a monotonic clock on
 * which timers are due. `advance(ms)` moves both; `jump(ms)` moves only the wall clock, the way an NTP step or
 * a suspended laptop does, so that a scheduler's handling of wall-clock jumps can be tested.
 *
 * Rules: timers fire in order of due time, then of creation; `advance()` fires every timer due within the
 * advanced span, including timers armed by the callbacks it runs, and lets promise jobs and immediates run
 * after each (so async work started by a timer settles before the next timer fires).
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const scheduler = new Scheduler({ clock });
 * scheduler.start();
 * const handle = await scheduler.schedule({ delayMs: 1000, work: () => 'ok' });
 * await clock.advance(1000);
 * handle.state; // 'done'
 * ```
 */
export class VirtualClock implements Clock {
  #wall: number;
  #mono = 0;
  #nextId = 0;
  readonly #flushTurns: number;
  readonly #timers = new Map<number, VirtualTimer>();

  /** @param options - start time and flush depth */
  constructor(options: VirtualClockOptions = {}) {
    const start = options.now ?? Date.UTC(2026, 0, 1);
    this.#wall = start instanceof Date ? start.getTime() : start;
    this.#flushTurns = options.flushTurns ?? 5;
  }

  /** {@inheritDoc @horae/core!index.Clock#now} */
  now(): number {
    return this.#wall;
  }

  /** The monotonic time, in ms since the clock was made (plus every advance). */
  get monotonic(): number {
    return this.#mono;
  }

  /** How many timers are armed. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** {@inheritDoc @horae/core!index.Clock#setTimer} */
  setTimer(callback: () => void, delayMs: number): ClockTimer {
    const id = this.#nextId++;
    const delay = Number.isFinite(delayMs) ? Math.max(0, delayMs) : 0;
    this.#timers.set(id, { id, dueAt: this.#mono + delay, callback });
    return { clear: () => void this.#timers.delete(id) };
  }

  /**
   * Moves both clocks forward by `ms`, firing the timers that fall due on the way, one at a time, each at its
   * due time, and letting async work settle after each.
   *
   * @param ms - how far, ≥ 0
   * @throws {@link @horae/core!index.InvalidInputError | InvalidInputError} when `ms` is negative or not finite
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidInputError(`advance() takes a finite ms ≥ 0, got ${String(ms)}`);
    const target = this.#mono + ms;
    await this.flush();
    for (;;) {
      const next = this.#next();
      if (next === undefined || next.dueAt > target) break;
      this.#moveTo(next.dueAt);
      this.#timers.delete(next.id);
      next.callback();
      await this.flush();
    }
    this.#moveTo(target);
    await this.flush();
  }

  /**
   * Moves only the wall clock (an NTP step, a resume from suspend); timers stay where they are.
   *
   * @param ms - how far; negative moves it back
   */
  jump(ms: number): void {
    if (!Number.isFinite(ms)) throw new InvalidInputError(`jump() takes a finite ms, got ${String(ms)}`);
    this.#wall += ms;
  }

  /**
   * Fires timers until none is armed, advancing the clocks to each.
   *
   * @param maxTimers - a bound against timers that re-arm forever
   * @returns how many timers fired
   * @throws {@link @horae/core!index.InvalidInputError | InvalidInputError} when more than `maxTimers` fired
   */
  async runAll(maxTimers = 100_000): Promise<number> {
    let fired = 0;
    await this.flush();
    for (let next = this.#next(); next !== undefined; next = this.#next()) {
      if (++fired > maxTimers) throw new InvalidInputError(`runAll() fired more than ${maxTimers} timers; a timer re-arms forever?`);
      this.#moveTo(next.dueAt);
      this.#timers.delete(next.id);
      next.callback();
      await this.flush();
    }
    return fired;
  }

  /** Lets pending promise jobs and immediates run, without moving time. */
  async flush(): Promise<void> {
    for (let i = 0; i < this.#flushTurns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  #moveTo(mono: number): void {
    if (mono <= this.#mono) return;
    this.#wall += mono - this.#mono;
    this.#mono = mono;
  }

  #next(): VirtualTimer | undefined {
    let best: VirtualTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (best === undefined || timer.dueAt < best.dueAt) best = timer;
    }
    return best;
  }
}
