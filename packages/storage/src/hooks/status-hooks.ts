/**
 * Status hooks (Harbor's job status hooks): every state change of a task is POSTed as signed JSON to a
 * configured URL, in the background, so that a slow or dead receiver never slows a run nor loses task
 * state. See docs/status-hooks.md.
 */
import { randomUUID } from 'node:crypto';
import { InvalidInputError, TypedEventEmitter, exponentialBackoff, realClock, type BackoffFn, type Clock, type ClockTimer } from '@horae/core';
import { HookEndpoint, positiveInteger, type HookEndpointOptions, type HookPostResult } from './hook-endpoint.js';
import { toStatusHookPayload, type StatusChange, type StatusHookPayload } from './hook-payload.js';
import type { StatusHookDeliveryError } from './status-hook-error.js';

// The feature's whole public surface comes through this module, so the package index needs one line for it.
export * from './hook-signature.js';
export * from './status-hook-error.js';
export * from './hook-payload.js';
export * from './hook-endpoint.js';
export * from './hook-outbox.js';
export * from '../memory/memory-hook-outbox.js';
export * from './hook-delivery-events.js';
export * from './hook-enqueuer.js';
export * from './hook-delivery-loop.js';
export * from './durable-status-hooks.js';

/** Options of {@link StatusHookSender} and {@link statusHooks}. */
export interface StatusHookOptions extends HookEndpointOptions {
  /**
   * POSTs per change in all, the first included; after the last failure the change is reported through
   * `hook:failed`.
   *
   * @defaultValue 5
   */
  maxAttempts?: number;
  /**
   * Delay before the next attempt, from the number of failed attempts so far (1 after the first) and the
   * last {@link StatusHookDeliveryError}. A function that throws or returns a non-finite or negative
   * number counts as 1000 ms.
   *
   * @defaultValue `exponentialBackoff({ baseMs: 1000, factor: 2, maxMs: 60000, jitter: 'equal' })` of
   * `@horae/core`: about 1 s, 2 s, 4 s, 8 s… capped at 60 s, each drawn in [d/2, d]
   */
  backoff?: BackoffFn;
  /**
   * POSTs in flight at once, across all tasks.
   *
   * @defaultValue 4
   */
  concurrency?: number;
  /**
   * Changes held waiting (queued, or waiting for a retry), not counting the at most `concurrency` in
   * flight. When a new change arrives and the queue is full, the OLDEST waiting change is dropped and
   * reported through `hook:dropped` with reason `queue-full`: the newest states (the terminal ones come
   * last) are the ones worth keeping.
   *
   * @defaultValue 1000
   */
  maxQueue?: number;
  /**
   * The clock that times backoff delays, the close grace period and the `time` and timestamp of a change.
   *
   * @defaultValue `realClock` of `@horae/core`
   */
  clock?: Clock;
}

/** Why a change was dropped without being delivered. */
export type StatusHookDropReason = 'queue-full' | 'closed';

/** Payload of `hook:delivered`: the receiver answered 2xx. */
export interface StatusHookDeliveredEvent {
  /** The change, as sent. */
  change: StatusHookPayload;
  /** The delivery id (`webhook-id`), the same on every attempt of this change. */
  deliveryId: string;
  /** POSTs it took, 1 when the first one succeeded. */
  attempts: number;
  /** The receiver's HTTP status. */
  status: number;
}

/** Payload of `hook:retrying`: an attempt failed and another one is armed on the clock. */
export interface StatusHookRetryingEvent {
  /** The change, as sent. */
  change: StatusHookPayload;
  /** The delivery id (`webhook-id`). */
  deliveryId: string;
  /** POSTs made so far. */
  attempts: number;
  /** Why the last one failed. */
  error: StatusHookDeliveryError;
  /** The delay before the next POST. */
  delayMs: number;
}

/** Payload of `hook:failed`: every attempt was spent, or the receiver answered a status not worth retrying. */
export interface StatusHookFailedEvent {
  /** The change that was not delivered. */
  change: StatusHookPayload;
  /** The delivery id (`webhook-id`). */
  deliveryId: string;
  /** POSTs made. */
  attempts: number;
  /** Why the last one failed. */
  error: StatusHookDeliveryError;
}

/** Payload of `hook:dropped`: the change left the queue without a final attempt (full queue, or closing). */
export interface StatusHookDroppedEvent {
  /** The change that was not delivered. */
  change: StatusHookPayload;
  /** The delivery id (`webhook-id`). */
  deliveryId: string;
  /** POSTs made before it was dropped (0 when it never left the queue). */
  attempts: number;
  /** Why it was dropped. */
  reason: StatusHookDropReason;
}

// A type alias, not an interface: TypedEventEmitter needs an event map that is assignable to a string-keyed record.
/** The events of a {@link StatusHookSender}. Every change ends in exactly one of delivered, failed or dropped. */
export type StatusHookEvents = {
  /** The receiver answered 2xx. */
  'hook:delivered': StatusHookDeliveredEvent;
  /** An attempt failed; another is armed. */
  'hook:retrying': StatusHookRetryingEvent;
  /** The change was given up. */
  'hook:failed': StatusHookFailedEvent;
  /** The change was dropped from a full queue or at close. */
  'hook:dropped': StatusHookDroppedEvent;
};

/** Options of {@link StatusHookSender.close}. */
export interface StatusHookCloseOptions {
  /**
   * How long, on the sender's clock, to wait for held changes (including their backoff delays) before
   * aborting the POSTs in flight and dropping the rest with reason `closed`.
   *
   * @defaultValue no limit: wait until every held change is delivered or failed
   */
  graceMs?: number;
}

type DeliveryState = 'queued' | 'sending' | 'waiting';

interface Delivery {
  readonly id: string;
  readonly payload: StatusHookPayload;
  readonly body: string;
  state: DeliveryState;
  attempts: number;
  timer: ClockTimer | undefined;
}


/**
 * POSTs task state changes to a URL in the background, held in memory, signed in the Standard Webhooks format and
 * retried with backoff. `createHorae` uses the durable outbox instead when the repository has one (see `HookDeliveryLoop`).
 *
 * Rules:
 * - `notify` never blocks, never waits for the network and never throws: it enqueues and returns.
 * - Every notified change ends in exactly one event: `hook:delivered`, `hook:failed` or `hook:dropped`.
 * - Per task, changes are POSTed one at a time in `notify` order: a change is sent only once the previous
 *   change of the same task was delivered, failed or dropped. Changes of different tasks have no order.
 * - At most `concurrency` POSTs are in flight and at most `maxQueue` changes wait; beyond that the oldest
 *   waiting change is dropped (`hook:dropped`, reason `queue-full`).
 * - Retried: network errors, timeouts, 408, 425, 429 and 5xx. Any other non-2xx answer (3xx included:
 *   redirects are not followed) fails at once.
 * - The sender never reads or writes the repository: a failing hook cannot change a task's state.
 *
 * @example
 * ```ts
 * const hooks = new StatusHookSender({ url: 'https://ops.example.com/horae', secret: process.env.HOOK_SECRET ?? generateStatusHookSecret() });
 * hooks.events.on('hook:failed', (e) => console.warn('status hook gave up', e.change.taskId, e.error.message));
 * hooks.notify({ taskId: 't1', workId: 'email', from: 'Initialized', to: 'Working', attempt: 1 });
 * await hooks.close({ graceMs: 5_000 });
 * ```
 */
export class StatusHookSender {
  readonly #endpoint: HookEndpoint;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffFn;
  readonly #concurrency: number;
  readonly #maxQueue: number;
  readonly #clock: Clock;
  /**
   * Where deliveries are reported: `hook:delivered`, `hook:retrying`, `hook:failed`, `hook:dropped`.
   * Listeners run synchronously; one that throws is reported as a process warning and cannot break delivery.
   */
  readonly events = new TypedEventEmitter<StatusHookEvents>();
  /** Every change not yet delivered, failed or dropped; insertion order is notify order. */
  readonly #held = new Map<string, Delivery>();
  /** Per task, its held changes in notify order; only the head may be sending or waiting. */
  readonly #byTask = new Map<string, Delivery[]>();
  /** Tasks whose head may be sent now, first come first served (may hold stale ids; the pump skips them). */
  readonly #ready: string[] = [];
  readonly #drainWaiters: Array<() => void> = [];
  /** One controller per POST in flight, so that close can abort them (no long-lived AbortSignal.any chains). */
  readonly #inFlight = new Set<AbortController>();
  #sending = 0;
  #pumpScheduled = false;
  #closing = false;
  #abandoned = false;

  /**
   * @param options - where to POST, the secret, and the delivery policy
   * @throws StatusHookUrlError when the URL is not http(s) or carries credentials
   * @throws InvalidInputError when a secret is not in the whsec_ format, or a number option is out of range
   */
  constructor(options: StatusHookOptions) {
    this.#maxAttempts = positiveInteger(options.maxAttempts, 5, 'maxAttempts');
    this.#concurrency = positiveInteger(options.concurrency, 4, 'concurrency');
    this.#maxQueue = positiveInteger(options.maxQueue, 1000, 'maxQueue');
    if (options.backoff !== undefined && typeof options.backoff !== 'function') {
      throw new InvalidInputError('status hooks: backoff must be a function from failed attempts to a delay in ms');
    }
    this.#backoff = options.backoff ?? exponentialBackoff({ baseMs: 1000, factor: 2, maxMs: 60_000, jitter: 'equal' });
    this.#clock = options.clock ?? realClock;
    this.#endpoint = new HookEndpoint(options, this.#clock);
  }

  /** Changes held: queued, waiting for a retry, or being sent. */
  get pending(): number {
    return this.#held.size;
  }

  /**
   * Enqueues one state change and returns at once; the POST happens in the background.
   *
   * Rule: never throws and never waits. After `close()`, the change is reported as `hook:dropped` with
   * reason `closed`; when the queue is full, the oldest waiting change is dropped to make room.
   *
   * @param change - the transition
   */
  notify(change: StatusChange): void {
    const payload = toStatusHookPayload(change, this.#clock.now());
    const delivery: Delivery = { id: randomUUID(), payload, body: JSON.stringify(payload), state: 'queued', attempts: 0, timer: undefined };
    if (this.#closing) {
      this.events.emit('hook:dropped', { change: payload, deliveryId: delivery.id, attempts: 0, reason: 'closed' });
      return;
    }
    if (this.#held.size - this.#sending >= this.#maxQueue) this.#dropOldestWaiting();
    this.#held.set(delivery.id, delivery);
    const queue = this.#byTask.get(payload.taskId);
    if (queue === undefined) {
      this.#byTask.set(payload.taskId, [delivery]);
      this.#ready.push(payload.taskId);
    } else {
      queue.push(delivery);
    }
    this.#schedulePump();
  }

  /**
   * Waits until no change is held: every change notified so far, and any notified meanwhile, is delivered,
   * failed or dropped. Backoff delays run on the sender's clock, so on a virtual clock advance it.
   *
   * @returns a promise that resolves when the sender is idle; it never rejects
   */
  flush(): Promise<void> {
    if (this.#held.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Stops taking changes and drains the held ones. Later `notify` calls report `hook:dropped` (`closed`).
   * With `graceMs`, once it has passed on the clock, POSTs in flight are aborted and every change still
   * held is dropped with reason `closed`. Calling it again is safe.
   *
   * @param options - the grace period
   * @returns a promise that resolves when nothing is held; it never rejects
   * @throws InvalidInputError (as a rejected promise) when graceMs is negative or not a number
   */
  async close(options: StatusHookCloseOptions = {}): Promise<void> {
    const { graceMs } = options;
    if (graceMs !== undefined && (typeof graceMs !== 'number' || !(graceMs >= 0))) {
      throw new InvalidInputError(`status hooks: graceMs must be a number >= 0, got ${String(graceMs)}`);
    }
    this.#closing = true;
    if (graceMs === undefined) return this.flush();
    let timer: ClockTimer | undefined;
    const graceOver = new Promise<void>((resolve) => {
      timer = this.#clock.setTimer(resolve, graceMs);
    });
    await Promise.race([this.flush(), graceOver]);
    timer?.clear();
    if (this.#held.size > 0) this.#abandon();
    await this.flush();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    // Deferred so that notify() stays O(1) and never runs fetch's synchronous part in the caller's stack.
    queueMicrotask(() => this.#pump());
  }

  #pump(): void {
    this.#pumpScheduled = false;
    if (this.#abandoned) return;
    while (this.#sending < this.#concurrency && this.#ready.length > 0) {
      const taskId = this.#ready.shift();
      if (taskId === undefined) break;
      const head = this.#byTask.get(taskId)?.[0];
      if (head === undefined || head.state !== 'queued') continue;
      void this.#send(head);
    }
  }

  /** One POST of `delivery` and what follows it. Never rejects. */
  async #send(delivery: Delivery): Promise<void> {
    delivery.state = 'sending';
    delivery.attempts += 1;
    this.#sending += 1;
    const result = await this.#post(delivery);
    this.#sending -= 1;
    const base = { change: delivery.payload, deliveryId: delivery.id, attempts: delivery.attempts };
    if (this.#abandoned) {
      this.#remove(delivery);
      this.events.emit('hook:dropped', { ...base, reason: 'closed' });
    } else if (result.ok) {
      this.#remove(delivery);
      this.events.emit('hook:delivered', { ...base, status: result.status });
    } else if (result.error.retryable && delivery.attempts < this.#maxAttempts) {
      const delayMs = this.#delayAfter(delivery.attempts, result.error);
      delivery.state = 'waiting';
      delivery.timer = this.#clock.setTimer(() => {
        delivery.timer = undefined;
        delivery.state = 'queued';
        this.#ready.push(delivery.payload.taskId);
        this.#schedulePump();
      }, delayMs);
      this.events.emit('hook:retrying', { ...base, error: result.error, delayMs });
    } else {
      this.#remove(delivery);
      this.events.emit('hook:failed', { ...base, error: result.error });
    }
    this.#checkDrained();
    this.#schedulePump();
  }

  /** A user backoff that throws or returns nonsense must not break delivery: fall back to 1 s. */
  #delayAfter(failedAttempts: number, error: StatusHookDeliveryError): number {
    try {
      const delay = this.#backoff(failedAttempts, error);
      return typeof delay === 'number' && Number.isFinite(delay) && delay >= 0 ? delay : 1000;
    } catch {
      return 1000;
    }
  }

  async #post(delivery: Delivery): Promise<HookPostResult> {
    // One controller per POST, so that close can abort them (no long-lived AbortSignal.any chains).
    const controller = new AbortController();
    this.#inFlight.add(controller);
    try {
      return await this.#endpoint.post({ id: delivery.id, body: delivery.body, attempt: delivery.attempts }, controller.signal);
    } finally {
      this.#inFlight.delete(controller);
    }
  }

  /** Removes a held change; when it headed its task's queue, the next change of the task becomes ready. */
  #remove(delivery: Delivery): void {
    this.#held.delete(delivery.id);
    const taskId = delivery.payload.taskId;
    const queue = this.#byTask.get(taskId);
    if (queue === undefined) return;
    const index = queue.indexOf(delivery);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.#byTask.delete(taskId);
    else if (index === 0) {
      this.#ready.push(taskId);
      this.#schedulePump();
    }
  }

  #dropOldestWaiting(): void {
    for (const delivery of this.#held.values()) {
      if (delivery.state === 'sending') continue;
      delivery.timer?.clear();
      delivery.timer = undefined;
      this.#remove(delivery);
      this.events.emit('hook:dropped', { change: delivery.payload, deliveryId: delivery.id, attempts: delivery.attempts, reason: 'queue-full' });
      return;
    }
  }

  /** The grace period is over: abort the POSTs in flight (they report themselves) and drop the rest. */
  #abandon(): void {
    this.#abandoned = true;
    for (const controller of this.#inFlight) controller.abort();
    for (const delivery of [...this.#held.values()]) {
      if (delivery.state === 'sending') continue;
      delivery.timer?.clear();
      delivery.timer = undefined;
      this.#remove(delivery);
      this.events.emit('hook:dropped', { change: delivery.payload, deliveryId: delivery.id, attempts: delivery.attempts, reason: 'closed' });
    }
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#held.size > 0) return;
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }
}

/** What {@link statusHooks} returns: the callback the storage middleware calls, and the sender's controls. */
export interface StatusHooks {
  /** Call on every transition; returns at once, never throws. Safe to pass around unbound. */
  readonly onTransition: (change: StatusChange) => void;
  /** The sender behind it, for its events, `flush` and `close`. */
  readonly sender: StatusHookSender;
}

/**
 * The glue for the storage middleware: a status hook sender and an unbound `(change) => void` callback
 * to call on each task transition.
 *
 * @param options - as for {@link StatusHookSender}
 * @returns the callback and the sender
 * @throws InvalidInputError on bad options, as the sender's constructor
 *
 * @example
 * ```ts
 * const hooks = statusHooks({ url: 'https://ops.example.com/horae', secret: process.env.HOOK_SECRET ?? generateStatusHookSecret() });
 * hooks.sender.events.on('hook:failed', (e) => console.warn(e.error.message));
 * // in the storage middleware, after each state write lands:
 * hooks.onTransition({ taskId: 't1', workId: 'email', from: 'Working', to: 'Done', attempt: 1 });
 * await hooks.sender.close({ graceMs: 5_000 });
 * ```
 */
export function statusHooks(options: StatusHookOptions): StatusHooks {
  const sender = new StatusHookSender(options);
  return { onTransition: (change) => sender.notify(change), sender };
}
