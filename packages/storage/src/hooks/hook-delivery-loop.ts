/**
 * The delivering half of durable status hooks: a loop per hook and node that claims due outbox rows under a lease,
 * POSTs them with bounded concurrency on its own timers (never on the run path), and settles each one.
 */
import { InvalidInputError, exponentialBackoff, type BackoffFn, type Clock, type ClockTimer, type TypedEventEmitter } from '@horae/core';
import { HookEndpoint, positiveInteger, type HookEndpointOptions, type HookPostResult } from './hook-endpoint.js';
import type { DurableHookEvents, HookDeliveryRef } from './hook-delivery-events.js';
import type { ClaimedHookDelivery, HookDeliveryOutcome, HookOutbox } from './hook-outbox.js';
import type { StatusHookDeliveryError } from './status-hook-error.js';

/** The delivery policy of one durable hook. */
export interface DurableHookPolicy {
  /**
   * POSTs per change in all, the first included, across every node and restart; then the row is a dead letter.
   *
   * @defaultValue 15
   */
  maxAttempts?: number;
  /**
   * Delay before the next attempt, from the attempts so far and the last error. A function that throws or returns
   * a non-finite or negative number counts as 1000 ms.
   *
   * @defaultValue `exponentialBackoff({ baseMs: 1000, factor: 2, maxMs: 3_600_000, jitter: 'equal' })`: about 1 s,
   * 2 s, 4 s … capped at one hour, so the 15 default attempts span roughly 2.5 to 5 hours of receiver outage
   */
  backoff?: BackoffFn;
  /**
   * POSTs of this hook in flight at once on this node.
   *
   * @defaultValue 4
   */
  concurrency?: number;
  /**
   * How often this node looks for due rows (its own enqueues wake it at once; this finds retries that fell due and
   * rows other nodes enqueued).
   *
   * @defaultValue 1000
   */
  pollIntervalMs?: number;
  /**
   * How long a claim holds a row: a node that dies mid-POST leaves it to others after this.
   *
   * @defaultValue `timeoutMs` + 60000
   */
  leaseMs?: number;
  /**
   * How long dead letters are kept (by their last change) before this node purges them; 0 keeps them forever.
   *
   * @defaultValue 7 days
   */
  deadLetterRetentionMs?: number;
}

/** Options of {@link HookDeliveryLoop}. */
export interface HookDeliveryLoopOptions extends HookEndpointOptions, DurableHookPolicy {
  /** The hook's name: the rows it delivers. */
  name: string;
  /** Where the rows are. */
  outbox: HookOutbox;
  /** The clock of the loop's timers and of the signing timestamps. */
  clock: Clock;
  /** Where deliveries are reported. */
  events: TypedEventEmitter<DurableHookEvents>;
}

/** How often dead letters past retention are purged. */
const PURGE_INTERVAL_MS = 60 * 60_000;
/** Failed POSTs in a row (network errors, timeouts, 408/425/429/5xx) after which the receiver is taken for down. */
const FAILURES_BEFORE_SUSPEND = 3;
/** The first pause of a receiver taken for down; it doubles with each failed probe. */
const FIRST_SUSPEND_MS = 1000;
/** The longest pause between two probes of a receiver taken for down. */
const MAX_SUSPEND_MS = 30_000;

/**
 * Delivers one hook's outbox rows from this node.
 *
 * Rules:
 * - Runs on its own timers: a claim when woken (an enqueue on this node, a settled row) or every `pollIntervalMs`;
 *   at most `concurrency` POSTs in flight. Nothing here is awaited by a run.
 * - A row is POSTed only under a claim (the outbox's lease), so two nodes never POST one row at once; a POST whose
 *   settle is refused (its lease was taken over) changes nothing.
 * - 2xx: delivered (row deleted). A retryable failure with attempts left: retried after the backoff, by whichever
 *   node claims it then (the time is stored, so it survives restarts). Otherwise: a dead letter.
 * - A failed claim or settle (the database is down) is reported as `hook:outbox-error` and tried again on the next
 *   poll; an unsettled row is claimed again once its lease expires.
 * - A receiver that looks down (3 retryable failures in a row) is left alone: no claim for 1 s, then one delivery as
 *   a probe; each failed probe doubles the pause (at most 30 s), a success ends it. So a dead receiver costs a probe
 *   now and then, not a POST and a write per due row, and the rows keep their place and their attempts.
 */
export class HookDeliveryLoop {
  readonly #name: string;
  readonly #outbox: HookOutbox;
  readonly #clock: Clock;
  readonly #events: TypedEventEmitter<DurableHookEvents>;
  readonly #endpoint: HookEndpoint;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffFn;
  readonly #concurrency: number;
  readonly #pollIntervalMs: number;
  readonly #leaseMs: number;
  readonly #retentionMs: number;
  readonly #inFlight = new Set<AbortController>();
  readonly #idleWaiters: Array<() => void> = [];
  #pollTimer: ClockTimer | undefined;
  #purgeTimer: ClockTimer | undefined;
  #claiming = false;
  #again = false;
  #started = false;
  #stopping = false;
  /** Retryable failures in a row; a 2xx or a final answer (4xx) resets it. */
  #failuresInRow = 0;
  /** While the receiver looks down: the pause before the next probe. */
  #suspendMs = 0;
  /** Until when (on the clock) no claim is made. */
  #suspendedUntil = 0;

  /**
   * @param options - the hook, its outbox and its policy
   * @throws StatusHookUrlError or InvalidInputError on a bad URL, secret or number option
   */
  constructor(options: HookDeliveryLoopOptions) {
    if (typeof options.name !== 'string' || options.name === '' || options.name.length > 200) {
      throw new InvalidInputError('status hooks: name must be a non-empty string of at most 200 characters');
    }
    this.#name = options.name;
    this.#outbox = options.outbox;
    this.#clock = options.clock;
    this.#events = options.events;
    this.#endpoint = new HookEndpoint(options, options.clock);
    this.#maxAttempts = positiveInteger(options.maxAttempts, 15, 'maxAttempts');
    this.#concurrency = positiveInteger(options.concurrency, 4, 'concurrency');
    this.#pollIntervalMs = positiveInteger(options.pollIntervalMs, 1000, 'pollIntervalMs');
    this.#leaseMs = positiveInteger(options.leaseMs, this.#endpoint.timeoutMs + 60_000, 'leaseMs');
    const retention = options.deadLetterRetentionMs ?? 7 * 24 * 60 * 60_000;
    if (typeof retention !== 'number' || !Number.isSafeInteger(retention) || retention < 0) {
      throw new InvalidInputError(`status hooks: deadLetterRetentionMs must be an integer ≥ 0, got ${String(retention)}`);
    }
    this.#retentionMs = retention;
    if (options.backoff !== undefined && typeof options.backoff !== 'function') {
      throw new InvalidInputError('status hooks: backoff must be a function from failed attempts to a delay in ms');
    }
    this.#backoff = options.backoff ?? exponentialBackoff({ baseMs: 1000, factor: 2, maxMs: 3_600_000, jitter: 'equal' });
  }

  /** The hook's name. */
  get name(): string {
    return this.#name;
  }

  /** POSTs in flight. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Starts polling (and purging). Calling it twice does nothing. */
  start(): void {
    if (this.#started || this.#stopping) return;
    this.#started = true;
    this.wake();
    if (this.#retentionMs > 0) this.#purge();
  }

  /** Looks for due rows now (an enqueue on this node landed). Does nothing before `start` or after `stop`. */
  wake(): void {
    if (!this.#started || this.#stopping) return;
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    void this.#claimRounds();
  }

  /**
   * Resolves when no claim and no POST of this loop is under way.
   *
   * @returns a promise of the idle moment; it never rejects
   */
  idle(): Promise<void> {
    if (!this.#claiming && this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops claiming; lets the POSTs in flight finish for at most `graceMs` on the clock, then aborts them: an
   * aborted row is settled for a retry at once, so another node (or the next start) sends it.
   *
   * @param graceMs - how long POSTs in flight may go on
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.#pollTimer?.clear();
    this.#purgeTimer?.clear();
    let timer: ClockTimer | undefined;
    const graceOver = new Promise<void>((resolve) => {
      timer = this.#clock.setTimer(resolve, graceMs);
    });
    await Promise.race([this.idle(), graceOver]);
    timer?.clear();
    for (const controller of this.#inFlight) controller.abort();
    await this.idle();
  }

  async #claimRounds(): Promise<void> {
    this.#claiming = true;
    this.#pollTimer?.clear();
    try {
      do {
        this.#again = false;
        if (this.#stopping || this.#clock.now() < this.#suspendedUntil) break;
        // A receiver that looked down gets one delivery, a probe, until one succeeds.
        const free = this.#suspendMs > 0 ? Math.min(1, 1 - this.#inFlight.size) : this.#concurrency - this.#inFlight.size;
        if (free <= 0) break;
        let claimed: ClaimedHookDelivery[];
        try {
          claimed = await this.#outbox.claimHookDeliveries({ hooks: [this.#name], limit: free, leaseMs: this.#leaseMs });
        } catch (error) {
          this.#events.emit('hook:outbox-error', { operation: 'claimHookDeliveries', error, retryInMs: this.#pollIntervalMs });
          break;
        }
        for (const row of claimed) void this.#deliver(row);
        // A full claim may have left due rows behind: claim again as soon as a slot frees (each settle wakes the loop).
      } while (this.#again);
    } finally {
      this.#claiming = false;
      if (!this.#stopping) {
        const untilResumed = this.#suspendedUntil - this.#clock.now();
        this.#pollTimer = this.#clock.setTimer(() => this.wake(), Math.max(untilResumed, untilResumed > 0 ? 0 : this.#pollIntervalMs));
      }
      this.#checkIdle();
    }
  }

  async #deliver(row: ClaimedHookDelivery): Promise<void> {
    const controller = new AbortController();
    this.#inFlight.add(controller);
    const ref: HookDeliveryRef = { hook: this.#name, deliveryId: row.id, taskId: row.taskId, attempts: row.attempts };
    const result = await this.#endpoint.post({ id: row.id, body: row.body, attempt: row.attempts }, controller.signal);
    const aborted = controller.signal.aborted;
    if (!aborted) this.#track(result);
    const [outcome, report] = this.#decide(result, row.attempts, aborted);
    try {
      const settled = await this.#outbox.settleHookDelivery(row.id, row.token, outcome);
      if (settled) report(ref);
    } catch (error) {
      this.#events.emit('hook:outbox-error', { operation: 'settleHookDelivery', error, retryInMs: undefined });
    } finally {
      this.#inFlight.delete(controller);
      // Claim again once half the slots are free (or none is busy), not after every POST: each claim is a write,
      // and on a busy node those writes compete with the runs'. Wake first: the claim round it starts keeps the
      // loop busy, so idle() does not resolve between the two.
      if (this.#inFlight.size === 0 || this.#concurrency - this.#inFlight.size >= Math.ceil(this.#concurrency / 2)) this.wake();
      this.#checkIdle();
    }
  }

  /** Counts failures in a row, and suspends the claims of a receiver that looks down (see the class rules). */
  #track(result: HookPostResult): void {
    if (result.ok || !result.error.retryable) {
      this.#failuresInRow = 0;
      this.#suspendMs = 0;
      this.#suspendedUntil = 0;
      return;
    }
    this.#failuresInRow += 1;
    // The other POSTs of the burst that tripped the pause fail too: they do not lengthen it.
    if (this.#failuresInRow < FAILURES_BEFORE_SUSPEND || this.#clock.now() < this.#suspendedUntil) return;
    this.#suspendMs = this.#suspendMs === 0 ? FIRST_SUSPEND_MS : Math.min(this.#suspendMs * 2, MAX_SUSPEND_MS);
    this.#suspendedUntil = this.#clock.now() + this.#suspendMs;
  }

  /** What to store, and what to report once it is stored. */
  #decide(result: HookPostResult, attempts: number, aborted: boolean): [HookDeliveryOutcome, (ref: HookDeliveryRef) => void] {
    if (result.ok) return [{ outcome: 'delivered' }, (ref) => this.#events.emit('hook:delivered', { ...ref, status: result.status })];
    const error = result.error;
    if (aborted) {
      // Stopped mid-POST: not the receiver's fault; the row goes back at once for another node or the next start.
      return [{ outcome: 'retry', delayMs: 0, error: error.message }, () => undefined];
    }
    if (error.retryable && attempts < this.#maxAttempts) {
      const delayMs = this.#delayAfter(attempts, error);
      return [{ outcome: 'retry', delayMs, error: error.message }, (ref) => this.#events.emit('hook:retrying', { ...ref, error, delayMs })];
    }
    return [{ outcome: 'dead', error: error.message }, (ref) => this.#events.emit('hook:dead', { ...ref, error })];
  }

  /** A user backoff that throws or returns nonsense must not break delivery: fall back to 1 s. */
  #delayAfter(failedAttempts: number, error: StatusHookDeliveryError): number {
    try {
      const delay = this.#backoff(failedAttempts, error);
      return typeof delay === 'number' && Number.isFinite(delay) && delay >= 0 ? Math.min(Math.round(delay), 2 ** 31 - 1) : 1000;
    } catch {
      return 1000;
    }
  }

  #purge(): void {
    if (this.#stopping) return;
    const before = new Date(this.#clock.now() - this.#retentionMs);
    this.#outbox.purgeHookDeliveries({ state: 'dead', before, hook: this.#name }).then(
      () => undefined,
      (error: unknown) => this.#events.emit('hook:outbox-error', { operation: 'purgeHookDeliveries', error, retryInMs: PURGE_INTERVAL_MS }),
    );
    this.#purgeTimer = this.#clock.setTimer(() => this.#purge(), PURGE_INTERVAL_MS);
  }

  #checkIdle(): void {
    if (this.#claiming || this.#inFlight.size > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
