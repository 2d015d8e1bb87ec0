import type { Clock, ClockTimer } from '@horae/core';
import { LeaseLostError, RepositoryError, TaskNotFoundError } from '../contract/errors.js';
import type { Repository } from '../contract/repository.js';

/** Options of a {@link LeaseKeeper}. */
export interface LeaseKeeperOptions {
  /** Where the lease lives. */
  repository: Repository;
  /** The node's clock; renewals are armed on it. */
  clock: Clock;
  /** The leased task. */
  taskId: string;
  /** The token of the claim. */
  token: string;
  /** The lease's duration; it is renewed every third of it. */
  leaseMs: number;
  /** Called once when the lease is lost: the run must stop and its result be discarded. */
  onLost: (error: LeaseLostError) => void;
  /** Called for each renewal that failed with an outage. */
  onRepositoryError?: (error: RepositoryError, attempt: number) => void;
  /**
   * The latest time, on `clock`, the lease is known to last: for a claim taken earlier and kept alive by another
   * keeper until now. @defaultValue now + `leaseMs` (the claim just landed)
   */
  expiresAt?: number;
}

/**
 * Keeps a running task's lease alive: renews it every `leaseMs / 3` while the run lasts.
 *
 * Rules: a renewal refused with LeaseLostError (the lease was reclaimed, the task cancelled or ended
 * elsewhere) calls `onLost` at once; renewals that fail with a RepositoryError are tried again until the lease
 * would have expired (measured from the last renewal that landed, on this node's clock), then `onLost` is
 * called, because another node may already have reclaimed the task.
 */
export class LeaseKeeper {
  readonly #options: LeaseKeeperOptions;
  readonly #intervalMs: number;
  #timer: ClockTimer | undefined;
  #expiresAt: number;
  #onLost: (error: LeaseLostError) => void;
  #onRepositoryError: ((error: RepositoryError, attempt: number) => void) | undefined;
  #lost: LeaseLostError | undefined = undefined;
  #failures = 0;
  #stopped = false;

  /** @param options - the task, the token and where to report */
  constructor(options: LeaseKeeperOptions) {
    this.#options = options;
    this.#onLost = options.onLost;
    this.#onRepositoryError = options.onRepositoryError;
    this.#intervalMs = Math.max(1, Math.floor(options.leaseMs / 3));
    // The claim landed before this keeper was built: its lease cannot outlast now + leaseMs.
    this.#expiresAt = options.expiresAt ?? options.clock.now() + options.leaseMs;
  }

  /** The latest time, on the clock, the lease is known to last: the last renewal that landed, plus `leaseMs`. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /**
   * Hands the keeper, still renewing, to a new owner: later losses go to `onLost`, renewal errors to
   * `onRepositoryError`. A lease lost before the hand-over is reported to `onLost` at once (the keeper has stopped).
   *
   * Why: a claim of the backlog is kept alive from the batch claim until its run starts, then by the run; handing the
   * keeper over spares a keeper, its timer and its callbacks a run, and the next renewal stays timed from the last one.
   *
   * @param onLost - called once when the lease is lost
   * @param onRepositoryError - called for each renewal that failed with an outage
   */
  handOver(onLost: (error: LeaseLostError) => void, onRepositoryError?: (error: RepositoryError, attempt: number) => void): void {
    this.#onLost = onLost;
    this.#onRepositoryError = onRepositoryError;
    if (this.#lost !== undefined) onLost(this.#lost);
  }

  /** Arms the first renewal. */
  start(): void {
    this.#arm(this.#intervalMs);
  }

  /** Stops renewing; a renewal under way is ignored when it returns. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.clear();
    this.#timer = undefined;
  }

  #arm(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimer(() => {
      this.#timer = undefined;
      void this.#renew();
    }, delayMs);
  }

  async #renew(): Promise<void> {
    const { repository, clock, taskId, token, leaseMs } = this.#options;
    const startedAt = clock.now();
    try {
      await repository.renewLease(taskId, token, leaseMs);
      if (this.#stopped) return;
      this.#failures = 0;
      this.#expiresAt = startedAt + leaseMs;
      this.#arm(this.#intervalMs);
    } catch (error) {
      if (this.#stopped) return;
      if (error instanceof LeaseLostError) return this.#lose(error);
      if (error instanceof TaskNotFoundError) return this.#lose(new LeaseLostError(taskId, `task "${taskId}" was deleted while it ran`));
      this.#failures++;
      if (error instanceof RepositoryError) this.#onRepositoryError?.(error, this.#failures);
      const left = this.#expiresAt - clock.now();
      if (left <= 0) {
        return this.#lose(new LeaseLostError(taskId, `the lease on task "${taskId}" could not be renewed before it expired (the repository is unreachable)`));
      }
      // Try again soon, but never later than the expiry itself.
      this.#arm(Math.min(left, Math.max(1, Math.floor(this.#intervalMs / 2 ** Math.min(this.#failures, 4)))));
    }
  }

  #lose(error: LeaseLostError): void {
    this.stop();
    this.#lost = error;
    this.#onLost(error);
  }
}
