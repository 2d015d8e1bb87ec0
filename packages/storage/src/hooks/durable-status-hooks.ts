/**
 * Durable status hooks: the enqueue and the delivery loops of one node over a repository's hook outbox, as
 * `createHorae` wires them. See docs/status-hooks.md.
 */
import { InvalidInputError, TypedEventEmitter, type Clock } from '@horae/core';
import type { DurableHookEvents } from './hook-delivery-events.js';
import { HookDeliveryLoop, type DurableHookPolicy } from './hook-delivery-loop.js';
import type { HookEndpointOptions } from './hook-endpoint.js';
import { HookEnqueuer } from './hook-enqueuer.js';
import { hasHookSubscriptions, type HookOutbox } from './hook-outbox.js';
import type { StatusChange } from './hook-payload.js';

/** A durable hook's options: the receiver, a name, and the outbox policy. */
export interface DurableStatusHookOptions extends HookEndpointOptions, DurableHookPolicy {
  /**
   * The hook's name, stored with each of its rows: a node delivers the rows of the hooks it is configured with, so
   * every node should configure the same names. Change the URL of a name and its pending rows go to the new URL.
   *
   * @defaultValue `'default'` (with several hooks, each needs its own name)
   */
  name?: string;
}

/** Options of {@link DurableStatusHooks}. */
export interface DurableStatusHooksOptions {
  /** The repository's hook outbox. */
  outbox: HookOutbox;
  /** The hooks. */
  hooks: readonly DurableStatusHookOptions[];
  /** The clock of the timers and the signing timestamps. */
  clock: Clock;
  /** Changes held while their enqueue waits. @defaultValue 10000 */
  maxBuffered?: number;
}

/**
 * The status hooks of one node, made durable by the outbox.
 *
 * Rules:
 * - With an outbox that has `HookSubscriptions` (SQLite, PostgreSQL), {@link DurableStatusHooks.subscribe} stores
 *   the hooks' names and the database writes every change's rows in the change's own transaction, whichever client
 *   made it; `onTransition` then only wakes the delivery loops.
 * - Otherwise (memory, MongoDB) `onTransition` buffers the changes this node makes (never waits, never throws) and
 *   the buffer is written to the outbox in batches, after the changes committed: a crash in between loses them.
 * - One {@link HookDeliveryLoop} per hook delivers the rows, those of any node included. Stopping this node leaves
 *   what it did not deliver in the outbox for the other nodes or the next start.
 */
export class DurableStatusHooks {
  /** `hook:delivered`, `hook:retrying`, `hook:dead`, `hook:outbox-error`, `hook:dropped`. */
  readonly events = new TypedEventEmitter<DurableHookEvents>();
  /** The outbox (list dead letters, redrive, purge). */
  readonly outbox: HookOutbox;
  /** One loop per hook. */
  readonly loops: readonly HookDeliveryLoop[];
  /** Writes this node's changes to the outbox; none when the database writes the rows itself. */
  readonly #enqueuer: HookEnqueuer | undefined;
  readonly #names: readonly string[];

  /**
   * @param options - the outbox, the hooks and the clock
   * @throws InvalidInputError on bad options: a duplicate or missing name, a bad URL or secret, a bad number
   */
  constructor(options: DurableStatusHooksOptions) {
    this.outbox = options.outbox;
    const names = new Set<string>();
    this.loops = options.hooks.map((hook) => {
      const name = hook.name ?? 'default';
      if (names.has(name)) {
        throw new InvalidInputError(`status hooks: two hooks are named "${name.slice(0, 200)}"; give each hook its own name (its rows in the outbox carry it)`);
      }
      names.add(name);
      return new HookDeliveryLoop({ ...hook, name, outbox: options.outbox, clock: options.clock, events: this.events });
    });
    this.#names = [...names];
    this.#enqueuer = hasHookSubscriptions(options.outbox)
      ? undefined
      : new HookEnqueuer({
          outbox: options.outbox,
          hooks: this.#names,
          clock: options.clock,
          events: this.events,
          ...(options.maxBuffered === undefined ? {} : { maxBuffered: options.maxBuffered }),
          onEnqueued: () => {
            for (const loop of this.loops) loop.wake();
          },
        });
  }

  /** Whether the database writes the rows itself (the outbox has HookSubscriptions): then nothing is buffered here. */
  get transactional(): boolean {
    return this.#enqueuer === undefined;
  }

  /**
   * Hands a change to the outbox (or, when the database wrote its rows, wakes the loops); returns at once, never
   * throws. Safe to pass unbound.
   */
  readonly onTransition = (change: StatusChange): void => {
    if (this.#enqueuer !== undefined) this.#enqueuer.onTransition(change);
    else for (const loop of this.loops) loop.wake();
  };

  /**
   * Stores the hooks' subscriptions, when the outbox has HookSubscriptions (else does nothing): from its return on,
   * every change in the database writes their rows. Call it before the node makes changes (`createHorae`'s
   * `start()` does).
   *
   * @throws RepositoryError when the database cannot be reached
   */
  async subscribe(): Promise<void> {
    // The guard only narrows the type: without an enqueuer the outbox has HookSubscriptions.
    if (this.#enqueuer === undefined && hasHookSubscriptions(this.outbox)) await this.outbox.subscribeHooks(this.#names);
  }

  /** Starts the delivery loops. */
  start(): void {
    for (const loop of this.loops) loop.start();
  }

  /**
   * Resolves once every change handed over so far is in the outbox and no POST of this node is under way. It does
   * not wait for retries that are due later.
   *
   * @returns a promise that never rejects
   */
  async flush(): Promise<void> {
    await this.#enqueuer?.flush();
    await Promise.all(this.loops.map((loop) => loop.idle()));
  }

  /**
   * Writes the buffered changes and lets the POSTs in flight finish, each for at most `graceMs`; then stops the
   * loops. Undelivered rows stay in the outbox.
   *
   * @param graceMs - the grace period, on the clock
   */
  async stop(graceMs: number): Promise<void> {
    await this.#enqueuer?.close(graceMs);
    await Promise.all(this.loops.map((loop) => loop.stop(graceMs)));
  }
}
