/**
 * Back-pressure on `schedule()` while the repository is down: how many calls (and how many bytes of params) may
 * wait for it, the typed refusal past that bound, and the call's own bounds (its signal and timeout).
 */
import { Buffer } from 'node:buffer';
import { HoraeError, InvalidInputError, ScheduleAbortedError, ScheduleTimeoutError, type Clock, type ClockTimer, type ScheduleCall } from '@horae/core';
import type { RepositoryError } from './errors.js';

/** How many `schedule()` calls may wait for the repository during an outage, when not told. */
export const DEFAULT_MAX_PENDING_SCHEDULES = 1_000;
/** How many bytes of params (their JSON text, UTF-8) the calls waiting during an outage may hold, when not told: 16 MiB. */
export const DEFAULT_MAX_PENDING_SCHEDULE_BYTES = 16 * 1024 * 1024;

/**
 * A `schedule()` call refused at once because the repository is down and as many calls as the bound allows
 * (`maxPendingSchedules`, `maxPendingScheduleBytes`) already wait for it. Nothing was written; its `cause` is the
 * repository's last outage error. Try again later, or give up: the call holds nothing.
 */
export class BackpressureError extends HoraeError {
  /**
   * @param pending - the calls waiting for the repository
   * @param pendingBytes - the bytes of params they hold
   * @param limit - which bound the call would have passed
   * @param cause - the repository's last outage error
   */
  constructor(
    readonly pending: number,
    readonly pendingBytes: number,
    readonly limit: 'maxPendingSchedules' | 'maxPendingScheduleBytes',
    cause: RepositoryError | undefined,
  ) {
    super(
      'BACKPRESSURE',
      `the repository is unavailable and ${pending} schedule() calls (${pendingBytes} bytes of params) already wait for it, ` +
        `the most ${limit} allows: this call was refused and nothing was written`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/** Options of {@link ScheduleGate}. */
export interface ScheduleGateOptions {
  /** The most calls that may wait during an outage (an integer ≥ 1). */
  maxPending: number;
  /** The most bytes of params they may hold (an integer ≥ 1). */
  maxPendingBytes: number;
  /** The clock the calls' timeouts run on (the scheduler's). */
  clock: Clock;
  /** Whether the repository is known to be down, and its last outage error. */
  health: { readonly down: boolean; readonly lastError: RepositoryError | undefined };
}

/** The size of a param as the bound counts it: the UTF-8 bytes of its JSON text. */
function paramBytes(param: unknown): number {
  const text = JSON.stringify(param);
  return text === undefined ? 4 : Buffer.byteLength(text);
}

function checkBound(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new InvalidInputError(`${what} must be an integer ≥ 1, got ${String(value)}`);
  return value;
}

/**
 * Admits `schedule()` calls to their insert, bounding those that wait for a repository that is down.
 *
 * Rules:
 * - A call waits for the repository when it was admitted while the repository was known to be down, or when a try of
 *   its insert failed with an outage; it stops waiting when its insert landed, failed with an answer, or was
 *   aborted. Those calls, and the bytes of their params, are what the bound counts.
 * - While the repository is known to be down, a call that would take the count past `maxPending`, or the bytes past
 *   `maxPendingBytes`, is refused at once with a {@link BackpressureError} and nothing is written.
 * - While the repository is up no call is refused: a burst on a healthy database is the database's to absorb. Calls
 *   already admitted when an outage starts are never refused after the fact; they count, and the calls made after
 *   them are refused until the count is below the bound.
 */
export class ScheduleGate {
  readonly #options: ScheduleGateOptions;
  #pending = 0;
  #pendingBytes = 0;

  /**
   * @param options - the bounds, the clock and the health of the repository
   * @throws InvalidInputError when a bound is not an integer ≥ 1
   */
  constructor(options: ScheduleGateOptions) {
    checkBound(options.maxPending, 'maxPendingSchedules');
    checkBound(options.maxPendingBytes, 'maxPendingScheduleBytes');
    this.#options = options;
  }

  /** Calls waiting for the repository. */
  get pending(): number {
    return this.#pending;
  }

  /** Bytes of params those calls hold. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Admits a call, or refuses it.
   *
   * @param taskId - the task the call inserts
   * @param param - its param (measured only when the call waits)
   * @param call - the call's own bounds, when it gave some
   * @returns the admitted call; `release()` it once its insert settled
   * @throws BackpressureError when the repository is down and the bound is reached (nothing was written)
   */
  admit(taskId: string, param: unknown, call: ScheduleCall | undefined): PendingSchedule {
    let bytes: number | undefined;
    if (this.#options.health.down) {
      bytes = paramBytes(param);
      const limit =
        this.#pending + 1 > this.#options.maxPending ? 'maxPendingSchedules' : this.#pendingBytes + bytes > this.#options.maxPendingBytes ? 'maxPendingScheduleBytes' : undefined;
      if (limit !== undefined) throw new BackpressureError(this.#pending, this.#pendingBytes, limit, this.#options.health.lastError);
    }
    const pending = new PendingSchedule(this, taskId, param, call, this.#options.clock);
    if (bytes !== undefined) pending.wait(bytes);
    return pending;
  }

  /** @internal Counts a call that waits for the repository. */
  add(bytes: number): void {
    this.#pending++;
    this.#pendingBytes += bytes;
  }

  /** @internal A waiting call stopped waiting. */
  remove(bytes: number): void {
    this.#pending--;
    this.#pendingBytes -= bytes;
  }
}

/**
 * One admitted `schedule()` call: whether it waits for the repository (and what it holds), and its own bounds as
 * one signal that aborts when the caller's signal does or when its timeout passes.
 */
export class PendingSchedule {
  readonly #gate: ScheduleGate;
  readonly #taskId: string;
  #param: unknown;
  readonly #call: ScheduleCall | undefined;
  /** The bytes counted while the call waits; undefined while it does not. */
  #bytes: number | undefined = undefined;
  #controller: AbortController | undefined = undefined;
  #timer: ClockTimer | undefined = undefined;
  #onCallerAbort: (() => void) | undefined = undefined;
  #timedOut = false;
  #released = false;

  /**
   * @param gate - the gate that counts it
   * @param taskId - the task it inserts
   * @param param - the param, measured when the call starts to wait
   * @param call - the call's own bounds
   * @param clock - the clock its timeout runs on
   */
  constructor(gate: ScheduleGate, taskId: string, param: unknown, call: ScheduleCall | undefined, clock: Clock) {
    this.#gate = gate;
    this.#taskId = taskId;
    this.#param = param;
    this.#call = call;
    if (call === undefined) return;
    const controller = new AbortController();
    this.#controller = controller;
    const { signal, deadline, timeoutMs } = call;
    if (signal !== undefined) {
      if (signal.aborted) controller.abort(signal.reason);
      else {
        this.#onCallerAbort = () => controller.abort(signal.reason);
        signal.addEventListener('abort', this.#onCallerAbort, { once: true });
      }
    }
    if (deadline !== undefined && timeoutMs !== undefined && !controller.signal.aborted) {
      this.#timer = clock.setTimer(() => {
        this.#timer = undefined;
        this.#timedOut = true;
        controller.abort(new ScheduleTimeoutError(timeoutMs, taskId, false));
      }, Math.max(0, deadline - clock.now()));
    }
  }

  /** Aborts when the call's signal does or its timeout passes; undefined when the call gave neither. */
  get signal(): AbortSignal | undefined {
    return this.#controller?.signal;
  }

  /**
   * Counts the call as waiting for the repository (once; later calls do nothing).
   *
   * @param bytes - the size of its param, when measured already
   */
  wait(bytes?: number): void {
    if (this.#bytes !== undefined || this.#released) return;
    this.#bytes = bytes ?? paramBytes(this.#param);
    this.#gate.add(this.#bytes);
  }

  /**
   * Whether `error` is this call's own abort (what a durable run throws when the call's signal ended its wait).
   *
   * @param error - what the insert threw
   */
  isAbort(error: unknown): boolean {
    const signal = this.#controller?.signal;
    return signal !== undefined && signal.aborted && error === signal.reason;
  }

  /**
   * The error a call ended by its own bounds rejects with.
   *
   * @param mayHaveBeenWritten - whether a try of its insert failed without an answer
   * @returns a ScheduleTimeoutError when the timeout passed, else a ScheduleAbortedError whose cause is the caller's reason
   */
  abortError(mayHaveBeenWritten: boolean): ScheduleAbortedError {
    if (this.#timedOut && this.#call?.timeoutMs !== undefined) return new ScheduleTimeoutError(this.#call.timeoutMs, this.#taskId, mayHaveBeenWritten);
    return new ScheduleAbortedError(this.#taskId, mayHaveBeenWritten, { cause: this.#call?.signal?.reason });
  }

  /** The call settled: it stops waiting, its timer and its listener on the caller's signal are dropped. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#param = undefined;
    if (this.#bytes !== undefined) this.#gate.remove(this.#bytes);
    this.#timer?.clear();
    this.#timer = undefined;
    if (this.#onCallerAbort !== undefined) this.#call?.signal?.removeEventListener('abort', this.#onCallerAbort);
    this.#onCallerAbort = undefined;
  }
}
