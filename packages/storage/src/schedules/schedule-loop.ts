/**
 * The loop that drives a {@link ScheduleMaterializer} on the scheduler's clock: recurring schedules become tasks
 * without anyone calling `tick()` by hand.
 */
import { HoraeError, InvalidInputError, type Clock, type ClockTimer, quoteInput } from '@horae/core';
import type { ScheduleMaterializer, ScheduleTickResult } from './schedule-materializer.js';
import type { TaskInfo } from '../contract/task-info.js';

/** Options of {@link ScheduleLoop}. */
export interface ScheduleLoopOptions {
  /** The materializer to tick. */
  materializer: ScheduleMaterializer;
  /** The clock the period is measured on (the scheduler's). */
  clock: Clock;
  /** The period between two ticks, in ms: an integer ≥ 1. */
  intervalMs: number;
  /**
   * Called with the tasks a tick created, before `sync` runs (status hooks report them as created).
   * A throw is reported through `onError` and does not stop the loop.
   */
  onCreated?: (tasks: readonly TaskInfo[]) => void;
  /** Called after a tick that created tasks, so that they are held by this node at once. @defaultValue none */
  sync?: () => Promise<unknown>;
  /** Called after every tick that finished, with what it did. @defaultValue none */
  onTick?: (result: ScheduleTickResult) => void;
  /**
   * Called when a tick, one schedule of it, or the follow-up sync failed; the loop goes on. An outage of the
   * repository is reported once, by its first failure, not at every tick while it lasts (see {@link ScheduleLoop}).
   * @defaultValue none
   */
  onError?: (error: unknown, scheduleName: string | undefined) => void;
  /** Called once when a tick finishes without an outage after ticks that failed with one. @defaultValue none */
  onRecovered?: (report: ScheduleLoopRecovery) => void;
}

/** The end of an outage as the schedule loop saw it. */
export interface ScheduleLoopRecovery {
  /** When the first tick that failed with the outage ran. */
  since: Date;
  /** How long from that tick to the first one that ran without an outage, in ms. */
  downMs: number;
  /** Ticks that failed with the outage. */
  failedTicks: number;
  /** Outage errors that were not reported (all but the first). */
  suppressed: number;
}

/** Whether an error is an outage of the repository (a RepositoryError, code `REPOSITORY_UNAVAILABLE`) rather than an answer. */
function isOutage(error: unknown): boolean {
  return error instanceof HoraeError && error.code === 'REPOSITORY_UNAVAILABLE';
}

/**
 * Ticks a materializer every `intervalMs` on a clock, one tick at a time.
 *
 * Rules: ticks never overlap (the next one is armed when the previous one, and its sync, finished); a failing
 * tick is reported and the loop goes on; after `stop()` resolves no tick runs and none is under way.
 *
 * An outage of the repository (an error with code `REPOSITORY_UNAVAILABLE`) is reported once: the first outage error
 * is passed to `onError`, the ones of the following ticks are counted, not reported, until a tick runs without an
 * outage; then `onRecovered` is called once, with the count. Every other error is reported each time it happens.
 */
export class ScheduleLoop {
  readonly #options: ScheduleLoopOptions;
  #timer: ClockTimer | undefined = undefined;
  #running: Promise<void> | undefined = undefined;
  #started = false;
  #stopped = false;
  /** The outage the ticks meet, from its first failed tick; undefined while ticks run without one. */
  #outage: { since: number; failedTicks: number; suppressed: number } | undefined = undefined;

  /**
   * @param options - the materializer, the clock, the period and the callbacks
   * @throws InvalidInputError when `intervalMs` is not an integer ≥ 1
   */
  constructor(options: ScheduleLoopOptions) {
    if (!Number.isSafeInteger(options.intervalMs) || options.intervalMs < 1) {
      throw new InvalidInputError(`the schedule tick interval must be an integer ≥ 1 ms, got ${quoteInput(options.intervalMs)}`);
    }
    this.#options = options;
  }

  /**
   * Ticks once now, then every `intervalMs`.
   *
   * @returns a promise that resolves when the first tick (and its sync) finished; it never rejects
   */
  async start(): Promise<void> {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    await this.tickNow();
    this.#arm();
  }

  /**
   * Runs one tick now (or waits for the one under way) and its follow-up sync.
   *
   * @returns a promise that resolves when it finished; it never rejects (errors go to `onError`)
   */
  tickNow(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    const running = this.#tick().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  /**
   * Stops the loop and waits for a tick under way.
   *
   * @returns a promise that resolves when no tick runs; it never rejects
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.clear();
    this.#timer = undefined;
    await this.#running;
  }

  #arm(): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimer(() => {
      this.#timer = undefined;
      void this.tickNow().then(() => this.#arm());
    }, this.#options.intervalMs);
  }

  async #tick(): Promise<void> {
    const { materializer, onCreated, sync, onTick } = this.#options;
    let result: ScheduleTickResult;
    try {
      result = await materializer.tick();
    } catch (error) {
      this.#afterTick([{ error, name: undefined }]);
      return;
    }
    this.#afterTick(result.outcomes.filter((outcome) => outcome.error !== undefined));
    if (result.created > 0) {
      try {
        onCreated?.(result.outcomes.flatMap((o) => o.created));
      } catch (error) {
        this.#report(error, undefined);
      }
      if (sync !== undefined && !this.#stopped) {
        try {
          await sync();
        } catch (error) {
          this.#report(error, undefined);
        }
      }
    }
    try {
      onTick?.(result);
    } catch (error) {
      this.#report(error, undefined);
    }
  }

  /** Reports the errors of one tick, an outage once for all the ticks it lasts, and its end. */
  #afterTick(failures: ReadonlyArray<{ error?: unknown; name: string | undefined }>): void {
    let outageSeen = false;
    for (const { error, name } of failures) {
      if (!isOutage(error)) {
        this.#report(error, name);
        continue;
      }
      if (this.#outage === undefined) {
        this.#outage = { since: this.#options.clock.now(), failedTicks: 0, suppressed: 0 };
        this.#report(error, name);
      } else this.#outage.suppressed++;
      outageSeen = true;
    }
    const outage = this.#outage;
    if (outage === undefined) return;
    if (outageSeen) {
      outage.failedTicks++;
      return;
    }
    this.#outage = undefined;
    try {
      this.#options.onRecovered?.({ since: new Date(outage.since), downMs: this.#options.clock.now() - outage.since, failedTicks: outage.failedTicks, suppressed: outage.suppressed });
    } catch {
      // The reporter's own failure must not stop the loop.
    }
  }

  #report(error: unknown, scheduleName: string | undefined): void {
    try {
      this.#options.onError?.(error, scheduleName);
    } catch {
      // The reporter's own failure must not stop the loop.
    }
  }
}
