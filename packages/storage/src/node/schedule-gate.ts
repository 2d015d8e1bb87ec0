/**
 * Back-pressure on `schedule()` while the repository is down: how many calls (and how many bytes of params) may
 * wait for it, the typed refusal past that bound, and the call's own bounds (its signal and timeout).
 */
import { Buffer } from 'node:buffer';
import { HoraeError, InvalidInputError, ScheduleAbortedError, ScheduleTimeoutError, type Clock, type ClockTimer, type ScheduleCall } from '@horae/core';
import type { RepositoryError } from '../contract/errors.js';

/** How many `schedule()` inserts may be under way at once (see `maxPendingSchedules`), when not told. */
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
  /** The most inserts under way at once (an integer ≥ 1). */
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

/** A call waiting for a free slot, in order. */
interface QueuedCall {
  readonly pending: PendingSchedule;
  readonly resolve: (pending: PendingSchedule) => void;
  readonly reject: (error: Error) => void;
  /** Drops the listener on the call's signal. */
  readonly forget: () => void;
  done: boolean;
}

/**
 * Admits `schedule()` calls to their insert: at most `maxPending` inserts under way at once (tried, or waiting to be
 * tried again after an outage), which bounds what an outage holds.
 *
 * Rules:
 * - A call takes a slot for its insert and gives it back once the insert landed, failed with an answer, or was given
 *   up. While the repository is up, a call that finds every slot taken waits for one, in order: a burst on a
 *   healthy database is paced, never refused.
 * - While the repository is known to be down (a try failed with an outage and none landed since), a call that finds
 *   every slot taken is refused at once with a {@link BackpressureError}, and so are the calls waiting for a slot
 *   when the outage becomes known: none of them was tried, so nothing of theirs was written.
 * - The calls whose insert waits for the repository (a try failed with an outage, or admitted while it was known to
 *   be down) hold at most `maxPendingBytes` of params together: a call during an outage that would pass it is
 *   refused the same way.
 * - A call waiting for a slot that its signal or timeout ends is rejected with a ScheduleAbortedError /
 *   ScheduleTimeoutError (`mayHaveBeenWritten` false) and leaves the queue.
 */
export class ScheduleGate {
  readonly #options: ScheduleGateOptions;
  #inFlight = 0;
  #waitingBytes = 0;
  #queue: QueuedCall[] = [];
  #head = 0;
  #idleWaiters: Array<() => void> = [];

  /**
   * @param options - the bounds, the clock and the health of the repository
   * @throws InvalidInputError when a bound is not an integer ≥ 1
   */
  constructor(options: ScheduleGateOptions) {
    checkBound(options.maxPending, 'maxPendingSchedules');
    checkBound(options.maxPendingBytes, 'maxPendingScheduleBytes');
    this.#options = options;
  }

  /** Inserts under way (each holds a slot). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Calls waiting for a slot. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Settles when no call holds a slot or waits for one (those admitted while it waits included): what a stop waits
   * for, so that no call queued before it writes after it.
   */
  idle(): Promise<void> {
    if (this.#inFlight === 0 && this.queued === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Bytes of params held by the calls whose insert waits for the repository. */
  get waitingBytes(): number {
    return this.#waitingBytes;
  }

  /**
   * Admits a call, queues it for a slot, or refuses it.
   *
   * @param taskId - the task the call inserts
   * @param param - its param (measured only when the call waits for the repository)
   * @param call - the call's own bounds, when it gave some
   * @returns the admitted call, or a promise of it once a slot is free; `release()` it once its insert settled
   * @throws BackpressureError when the repository is down and the bound is reached (nothing was written)
   */
  admit(taskId: string, param: unknown, call: ScheduleCall | undefined): PendingSchedule | Promise<PendingSchedule> {
    const { maxPending, maxPendingBytes, health } = this.#options;
    let bytes: number | undefined;
    if (health.down) {
      bytes = paramBytes(param);
      const limit = this.#inFlight >= maxPending ? 'maxPendingSchedules' : this.#waitingBytes + bytes > maxPendingBytes ? 'maxPendingScheduleBytes' : undefined;
      if (limit !== undefined) throw new BackpressureError(this.#inFlight, this.#waitingBytes, limit, health.lastError);
    }
    const pending = new PendingSchedule(this, taskId, param, call, this.#options.clock);
    if (this.#inFlight < maxPending) {
      this.#enter(pending);
      if (bytes !== undefined) pending.wait(health.lastError, bytes);
      return pending;
    }
    return new Promise<PendingSchedule>((resolve, reject) => this.#enqueue(pending, resolve, reject));
  }

  #enter(pending: PendingSchedule): void {
    this.#inFlight++;
    pending.entered = true;
  }

  #enqueue(pending: PendingSchedule, resolve: (pending: PendingSchedule) => void, reject: (error: Error) => void): void {
    const signal = pending.signal;
    const onAbort = (): void => {
      if (queued.done) return;
      queued.done = true;
      pending.release();
      reject(pending.abortError(false));
    };
    const queued: QueuedCall = { pending, resolve, reject, forget: () => signal?.removeEventListener('abort', onAbort), done: false };
    if (signal?.aborted === true) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#queue.push(queued);
  }

  #shift(): QueuedCall | undefined {
    while (this.#head < this.#queue.length) {
      const queued = this.#queue[this.#head++]!;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (!queued.done) return queued;
    }
    return undefined;
  }

  /** @internal A call that held a slot gave it back: the next queued call takes it, or, during an outage, is refused. */
  leave(): void {
    this.#inFlight--;
    if (this.#options.health.down) this.#refuseQueued(this.#options.health.lastError);
    const next = this.#shift();
    if (next !== undefined) {
      next.done = true;
      next.forget();
      this.#enter(next.pending);
      next.resolve(next.pending);
    }
    if (this.#inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** @internal A call's insert waits for the repository: its param is counted, and the queue is refused. */
  waiting(bytes: number, error: RepositoryError | undefined): void {
    this.#waitingBytes += bytes;
    this.#refuseQueued(error);
  }

  /** @internal A call that waited for the repository stopped waiting. */
  stoppedWaiting(bytes: number): void {
    this.#waitingBytes -= bytes;
  }

  /** The repository is down: no queued call will be tried soon, and none of them was tried yet. */
  #refuseQueued(error: RepositoryError | undefined): void {
    for (let queued = this.#shift(); queued !== undefined; queued = this.#shift()) {
      queued.done = true;
      queued.forget();
      queued.pending.release();
      queued.reject(new BackpressureError(this.#inFlight, this.#waitingBytes, 'maxPendingSchedules', error));
    }
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
  /** @internal Whether the call holds a slot of the gate. */
  entered = false;

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
   * Counts the call as waiting for the repository (once; later calls do nothing): a try failed with an outage, or
   * it was admitted while the repository was known to be down.
   *
   * @param error - the outage
   * @param bytes - the size of its param, when measured already
   */
  wait(error: RepositoryError | undefined, bytes?: number): void {
    if (this.#bytes !== undefined || this.#released) return;
    this.#bytes = bytes ?? paramBytes(this.#param);
    this.#gate.waiting(this.#bytes, error);
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

  /** The call settled: it gives its slot back, stops waiting, and its timer and listener on the caller's signal are dropped. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#param = undefined;
    if (this.#bytes !== undefined) this.#gate.stoppedWaiting(this.#bytes);
    this.#timer?.clear();
    this.#timer = undefined;
    if (this.#onCallerAbort !== undefined) this.#call?.signal?.removeEventListener('abort', this.#onCallerAbort);
    this.#onCallerAbort = undefined;
    if (this.entered) {
      this.entered = false;
      this.#gate.leave();
    }
  }
}
