/**
 * The writing half of durable status hooks: each state change becomes one outbox row per hook, written in batches
 * after the change's own write landed, off the run path.
 */
import { randomUUID } from 'node:crypto';
import type { Clock, ClockTimer, TypedEventEmitter } from '@horae/core';
import { toStatusHookPayload, type StatusChange, type StatusHookPayload } from './hook-payload.js';
import type { DurableHookEvents } from './hook-delivery-events.js';
import type { HookOutbox, NewHookDelivery } from './hook-outbox.js';

/** Options of {@link HookEnqueuer}. */
export interface HookEnqueuerOptions {
  /** Where the rows go. */
  outbox: HookOutbox;
  /** The names of the hooks each change is enqueued for (one row each). */
  hooks: readonly string[];
  /** Times the retry of a failed enqueue and the `time` of a change that has none. */
  clock: Clock;
  /** Where drops and enqueue failures are reported. */
  events: TypedEventEmitter<DurableHookEvents>;
  /**
   * Changes held while their enqueue waits (the database is down, say); beyond it the oldest is dropped and
   * reported through `hook:dropped` (`buffer-full`).
   *
   * @defaultValue 10000
   */
  maxBuffered?: number;
  /** Called after each batch landed (to wake this node's delivery loops). */
  onEnqueued?: () => void;
}

/** How long changes gather before their batch is written (real time). */
const BATCH_WINDOW_MS = 20;
/** The most rows one enqueue writes; a longer buffer goes in several batches. */
const MAX_BATCH = 500;

interface Pending {
  payload: StatusHookPayload;
  rows: NewHookDelivery[];
}

/**
 * Turns state changes into outbox rows.
 *
 * Rules:
 * - `onTransition` never waits and never throws: it buffers the change; the buffer is written on a later turn of the
 *   event loop, all the changes of that turn in one `enqueueHookDeliveries` call (one transaction), one call at a
 *   time. So a drain of thousands of tasks costs a few batched inserts, not one write per change on the run path.
 * - A failed enqueue is retried with backoff (100 ms doubling to 5 s, on the clock) with the same ids, so a write
 *   that landed before its answer was lost is not enqueued twice.
 * - Between the change's own write and its batch's commit the change lives only in this buffer: a crash of the
 *   process in that window (normally less than a millisecond plus one database round trip; the length of an outage
 *   while the database is down) loses it. At most `maxBuffered` changes are held.
 */
export class HookEnqueuer {
  readonly #outbox: HookOutbox;
  readonly #hooks: readonly string[];
  readonly #clock: Clock;
  readonly #events: TypedEventEmitter<DurableHookEvents>;
  readonly #maxBuffered: number;
  readonly #onEnqueued: (() => void) | undefined;
  #buffer: Pending[] = [];
  #writing = false;
  #scheduled = false;
  #failures = 0;
  #retryTimer: ClockTimer | undefined;
  #closed = false;
  readonly #idleWaiters: Array<() => void> = [];

  /** @param options - the outbox, the hooks and the bounds */
  constructor(options: HookEnqueuerOptions) {
    this.#outbox = options.outbox;
    this.#hooks = options.hooks;
    this.#clock = options.clock;
    this.#events = options.events;
    this.#maxBuffered = options.maxBuffered ?? 10_000;
    this.#onEnqueued = options.onEnqueued;
  }

  /** Changes buffered, not yet in the outbox. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * Buffers one change for every hook. Never throws, never waits.
   *
   * @param change - the transition, after its write landed
   */
  onTransition(change: StatusChange): void {
    const payload = toStatusHookPayload(change, this.#clock.now());
    if (this.#closed) {
      this.#events.emit('hook:dropped', { change: payload, reason: 'closed' });
      return;
    }
    const body = JSON.stringify(payload);
    const rows = this.#hooks.map((hook) => ({ id: randomUUID(), hook, taskId: payload.taskId, body }));
    if (this.#buffer.length >= this.#maxBuffered) {
      const dropped = this.#buffer.shift();
      if (dropped !== undefined) this.#events.emit('hook:dropped', { change: dropped.payload, reason: 'buffer-full' });
    }
    this.#buffer.push({ payload, rows });
    this.#schedule();
  }

  /**
   * Resolves once every change buffered so far is in the outbox (or dropped). Never rejects.
   *
   * @returns a promise of the idle moment
   */
  flush(): Promise<void> {
    if (this.#buffer.length === 0 && !this.#writing) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops taking changes and writes what is buffered, for at most `graceMs` on the clock; what is still buffered
   * then is dropped (`hook:dropped`, `closed`).
   *
   * @param graceMs - how long to wait
   */
  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    let timer: ClockTimer | undefined;
    const graceOver = new Promise<void>((resolve) => {
      timer = this.#clock.setTimer(resolve, graceMs);
    });
    await Promise.race([this.flush(), graceOver]);
    timer?.clear();
    this.#retryTimer?.clear();
    this.#retryTimer = undefined;
    for (const dropped of this.#buffer.splice(0)) this.#events.emit('hook:dropped', { change: dropped.payload, reason: 'closed' });
    this.#checkIdle();
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing || this.#retryTimer !== undefined) return;
    this.#scheduled = true;
    // A short real-time window (not the clock's: it only groups writes): the changes of a wave of runs go in one batch,
    // so a drain pays a few inserts, not one per change.
    setTimeout(() => {
      this.#scheduled = false;
      void this.#write();
    }, BATCH_WINDOW_MS);
  }

  async #write(): Promise<void> {
    if (this.#writing || this.#buffer.length === 0) return this.#checkIdle();
    this.#writing = true;
    const batch = this.#buffer.slice(0, Math.max(1, Math.floor(MAX_BATCH / Math.max(1, this.#hooks.length))));
    try {
      await this.#outbox.enqueueHookDeliveries(batch.flatMap((p) => p.rows));
      this.#failures = 0;
      // Only now do they leave the buffer: a batch that failed is retried whole, with the same ids.
      const done = new Set(batch);
      this.#buffer = this.#buffer.filter((p) => !done.has(p));
      this.#writing = false;
      this.#onEnqueued?.();
      if (this.#buffer.length > 0) this.#schedule();
    } catch (error) {
      this.#writing = false;
      this.#failures += 1;
      const retryInMs = Math.min(5_000, 100 * 2 ** (this.#failures - 1));
      this.#events.emit('hook:outbox-error', { operation: 'enqueueHookDeliveries', error, retryInMs });
      if (!this.#closed || this.#idleWaiters.length > 0) {
        this.#retryTimer = this.#clock.setTimer(() => {
          this.#retryTimer = undefined;
          void this.#write();
        }, retryInMs);
      }
    }
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#buffer.length > 0 || this.#writing) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
