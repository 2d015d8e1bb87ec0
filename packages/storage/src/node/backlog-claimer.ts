/**
 * Claims the backlog (tasks already due that this node does not hold) in batches, as run slots free up.
 *
 * Why: a task already due when sync finds it gains nothing from a local timer. Holding it cost this node a timer
 * entry and one claim statement per task, and on many nodes every node held every task of the backlog, so each
 * task was claimed by all of them and lost by all but one. Claimed in batches (`claimDue`, one statement for as
 * many tasks as there are free slots), the backlog is spread across nodes by the database, one claim per run.
 */
import type { Clock, ClockTimer, GeneratorHandle, ScheduleOptions, TaskGenerator, ValueKey } from '@horae/core';
import { createKey } from '@horae/core';
import type { DurableWriter } from './durable-write.js';
import { LeaseLostError, TaskNotFoundError, type RepositoryError } from '../contract/errors.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { Repository } from '../contract/repository.js';
import type { TaskInfo } from '../contract/task-info.js';

/**
 * A task this node claimed from the backlog and hands to the scheduler: the claimed row and the keeper of its
 * lease, which runs from the claim until the run starts (or the claim is handed back).
 * @internal
 */
export class BacklogClaim {
  /** The claimed row (Working, under this node's lease). */
  readonly task: TaskInfo;
  /** Keeps the lease alive until the run starts. */
  readonly keeper: LeaseKeeper;
  /** Set when the lease was lost before the run started (cancelled elsewhere, or reclaimed after a stall). */
  lost: LeaseLostError | undefined;
  #settled = false;
  readonly #onSettled: () => void;

  /**
   * @param task - the claimed row
   * @param keeper - builds the keeper of its lease from the report of a lost lease
   * @param onSettled - called once, when a run takes the claim or it is handed back
   */
  constructor(task: TaskInfo, keeper: (onLost: (error: LeaseLostError) => void) => LeaseKeeper, onSettled: () => void) {
    this.task = task;
    this.#onSettled = onSettled;
    this.keeper = keeper((error) => {
      this.lost = error;
    });
  }

  /** Whether a run took the claim, or it was handed back: nothing else may use it. */
  get settled(): boolean {
    return this.#settled;
  }

  /**
   * Marks the claim used (by a run, or handed back) and stops its keeper; false when it already was.
   * @param keepKeeper - true for a run that takes the keeper over ({@link LeaseKeeper.handOver}): it keeps renewing,
   * and the run must stop it
   */
  settle(keepKeeper = false): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    if (!keepKeeper) this.keeper.stop();
    this.#onSettled();
    return true;
  }
}

/** Carries a {@link BacklogClaim} through the middleware chain to the storage middleware. @internal */
export const BacklogClaimKey: ValueKey<BacklogClaim> = createKey<BacklogClaim>('horae.storage.backlogClaim');

/** What the claimer needs from its storage middleware. @internal */
export interface BacklogHost {
  readonly repository: Repository;
  readonly durable: DurableWriter;
  readonly clock: Clock;
  readonly nodeId: string;
  readonly leaseMs: number;
  /** The works whose backlog this node claims in batches (registered here, with no concurrency limit). */
  workIds(): readonly string[];
  /** Run slots free on the scheduler now. */
  freeSlots(): number;
  /** How many tasks to hold claimed beyond the free slots (see the storage option `claimAhead`). */
  readonly claimAhead: number;
  /** The aging of the claim order (the scheduler's). */
  readonly agingMs: number;
  /** Hands a claimed task to the scheduler, through the whole middleware chain (the storage middleware holds it). */
  schedule(claim: BacklogClaim): Promise<unknown>;
  /**
   * The chain refused a claimed task (a middleware before storage threw): the claim was handed back. The host
   * holds that work's tasks on timers from now on, where a refusal writes nothing (see #refused).
   */
  refused(claim: BacklogClaim, error: unknown): void;
  /** Reports a renewal of a waiting claim that failed with an outage. */
  onRepositoryError(taskId: string, error: RepositoryError, attempt: number): void;
  /** Reports a batch claim that failed for another reason than an outage (outages are retried until they land). */
  onClaimError(error: unknown): void;
}

/**
 * How long after the latest notice's due time (by this node's clock) a batch that came back short is tried again:
 * a node whose clock runs ahead of the database's finds tasks due that `claimDue`, judging by the database's clock,
 * does not return yet. Skews up to this are covered; the tries back off from {@link RECHECK_FIRST_MS} to
 * {@link RECHECK_MAX_MS}, so a burst costs at most a few empty claims.
 */
export const RECHECK_WINDOW_MS = 30_000;
/** The first delay before a short batch is tried again (doubling up to {@link RECHECK_MAX_MS}). */
export const RECHECK_FIRST_MS = 100;
/** The longest delay between two tries of a short batch. */
export const RECHECK_MAX_MS = 2_000;

/** The most tasks one `claimDue` takes, whatever the free slots (a bound on one statement). */
export const BACKLOG_BATCH_MAX = 256;

/**
 * The scheduler-side generator of the backlog, pulled by the core's generator pool when a run slot is free, and a
 * buffer of tasks claimed ahead.
 *
 * Rules: a claim asks for the room left — the free slots plus `claimAhead`, minus the claims handed to the scheduler
 * and not started yet (and those asked for by batches under way) — at most {@link BACKLOG_BATCH_MAX}, with one
 * `claimDue`, so a node holds at most `claimAhead` claimed tasks beyond what it can start at once. Claims ahead are
 * unstarted: they spend no attempt until a run takes one (`markAsStarted`). A pull of the pool claims when a slot is
 * free; a run that takes a claim refills the buffer once half of it is free (without waiting for a free slot with
 * nothing queued, which is when the pool would pull), so the next run finds its task claimed. Each claimed task goes
 * to the scheduler at once and keeps its lease alive until its run starts; a claim that will not run here (the chain
 * refused it, its task ended first, the claimer stopped) is released, uncounted, at its due time; when `claimDue`
 * returns fewer tasks than asked, the backlog is empty until {@link BacklogClaimer.notify} says otherwise — or, while
 * the latest notice's due time is less than {@link RECHECK_WINDOW_MS} old by this node's clock, until a recheck with
 * backoff, since a task due by a fast node's clock may not be due yet by the database's.
 * @internal
 */
export class BacklogClaimer implements TaskGenerator {
  readonly #host: BacklogHost;
  #pending = false;
  // Counts notices: a batch that comes back short clears #pending only when no notice arrived while it was out.
  #notices = 0;
  #handle: GeneratorHandle | undefined;
  /** Claims handed to the scheduler whose run has not taken them yet, and slots asked for by batches under way. */
  #outstanding = 0;
  #stopped = false;
  readonly #unsettled = new Set<BacklogClaim>();
  /** The latest due time (this node's clock, ms) of a task sync handed over: how long a short batch is tried again. */
  #latestNoticeDue = Number.NEGATIVE_INFINITY;
  #recheckMs = RECHECK_FIRST_MS;
  #recheck: ClockTimer | undefined;

  /** @param host - the storage middleware */
  constructor(host: BacklogHost) {
    this.#host = host;
  }

  /** Claims handed to the scheduler whose run has not started yet. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Registers with the scheduler's generator pool. */
  attach(
    addGenerator: (generator: TaskGenerator, options: { name: string; readyCheckMs: number; precedence: 'first'; heldSlots: () => number }) => GeneratorHandle,
  ): void {
    // The check timer is only a safety net: notify() wakes the pool whenever sync finds backlog.
    // Due tasks take free slots before any user generator is pulled, whatever its priority (issue 9): 'first' when
    // ready, and the slots of claims under way or not started yet are not given to another generator meanwhile.
    this.#handle = addGenerator(this, {
      name: 'horae.storage.backlog',
      readyCheckMs: 1_000,
      precedence: 'first',
      heldSlots: () => this.#outstanding,
    });
    if (this.#pending) this.#handle.wake();
  }

  /**
   * Sync found a due task this node does not hold: there is backlog to claim.
   * @param dueAt - the task's due time (ms): a batch that comes back short is tried again for a while after it
   */
  notify(dueAt = Number.NEGATIVE_INFINITY): void {
    if (this.#stopped) return;
    this.#notices++;
    if (dueAt > this.#latestNoticeDue) this.#latestNoticeDue = dueAt;
    this.#recheckMs = RECHECK_FIRST_MS;
    if (!this.#pending) {
      this.#pending = true;
      this.#handle?.wake();
    }
  }

  /** Never done: the backlog refills whenever tasks fall due. */
  isDone(): boolean {
    return false;
  }

  /** Ready while sync said there is backlog and a slot is left that no claim waits for. */
  isReady(): boolean {
    return !this.#stopped && this.#pending && this.#host.freeSlots() - this.#outstanding > 0;
  }

  /** Nothing to start over. */
  reset(): void {}

  /**
   * Starts a batch claim for the free slots, which hands each task to the scheduler itself (so that a task the
   * chain refuses is handed back here), and returns nothing at once: the pool asks again at the next slot release
   * or notice, while this batch is still under way. Batches of several releases are thus in flight together, and
   * a repository with group commit writes those of one tick in one transaction.
   */
  generate(): ScheduleOptions | undefined {
    this.#startBatch();
    return undefined;
  }

  /**
   * A short batch right after tasks fell due by this node's clock: they may not be due by the database's yet (this
   * node's clock runs ahead). Try again with backoff while the latest notice is recent; nothing else would.
   */
  #armRecheck(): void {
    if (this.#stopped || this.#recheck !== undefined) return;
    const clock = this.#host.clock;
    if (clock.now() - this.#latestNoticeDue > RECHECK_WINDOW_MS) return;
    const delay = this.#recheckMs;
    this.#recheckMs = Math.min(RECHECK_MAX_MS, delay * 2);
    this.#recheck = clock.setTimer(() => {
      this.#recheck = undefined;
      if (this.#stopped || this.#pending) return;
      this.#pending = true;
      if (this.isReady()) this.#handle?.wake();
      else this.#startBatch();
    }, delay);
  }

  #startBatch(): void {
    if (this.#pending && !this.#stopped) {
      this.#claimBatch().catch((error: unknown) => this.#host.onClaimError(error));
    }
  }

  /** A run took a claim (or one was handed back): refill the buffer once half of it is free. */
  #refill(): void {
    const ahead = this.#host.claimAhead;
    if (ahead > 0 && this.#room() >= Math.max(1, Math.ceil(ahead / 2))) this.#startBatch();
  }

  /** Stops claiming and releases the claims whose run has not started, uncounted, for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pending = false;
    this.#recheck?.clear();
    this.#recheck = undefined;
    this.#handle?.remove();
    this.#handle = undefined;
    await Promise.all([...this.#unsettled].map((claim) => this.handBack(claim)));
  }

  /**
   * Gives back a claim that will not run here: released at its due time, its attempt refunded. A release refused
   * because the lease is gone needs nothing.
   */
  async handBack(claim: BacklogClaim): Promise<void> {
    if (!claim.settle()) return;
    const { durable, repository } = this.#host;
    const { id, scheduledAt } = claim.task;
    const token = claim.task.lease?.token ?? '';
    try {
      await durable.run('release', id, () => repository.release(id, token, { runAt: scheduledAt, refundAttempt: true }));
    } catch (error) {
      if (!(error instanceof LeaseLostError) && !(error instanceof TaskNotFoundError)) throw error;
    }
  }

  /** How many more tasks a claim may take now: free slots plus the claim-ahead buffer, less what is held or asked for. */
  #room(): number {
    return Math.max(0, this.#host.freeSlots()) + this.#host.claimAhead - this.#outstanding;
  }

  async #claimBatch(): Promise<void> {
    const host = this.#host;
    const workIds = host.workIds();
    if (workIds.length === 0) {
      this.#pending = false;
      return;
    }
    const limit = Math.min(BACKLOG_BATCH_MAX, this.#room());
    if (limit <= 0) return;
    const notices = this.#notices;
    // The slots asked for are taken until the batch is back: a claim of the next release asks only for the rest.
    this.#outstanding += limit;
    let claimed: TaskInfo[];
    try {
      const options = { owner: host.nodeId, leaseMs: host.leaseMs, limit, workIds, agingMs: host.agingMs };
      claimed = await host.durable.run('claimDue', undefined, () => host.repository.claimDue(options));
    } finally {
      this.#outstanding -= limit;
    }
    // Fewer than asked: the backlog is drained (until sync finds more).
    if (claimed.length < limit && this.#notices === notices) {
      this.#pending = false;
      this.#armRecheck();
    }
    const batch: BacklogClaim[] = [];
    for (const task of claimed) {
      this.#outstanding++;
      const claim: BacklogClaim = new BacklogClaim(
        task,
        (onLost) =>
          new LeaseKeeper({
            repository: host.repository,
            clock: host.clock,
            taskId: task.id,
            token: task.lease?.token ?? '',
            leaseMs: host.leaseMs,
            onLost,
            onRepositoryError: (error, attempt) => host.onRepositoryError(task.id, error, attempt),
          }),
        () => {
          this.#outstanding--;
          this.#unsettled.delete(claim);
          this.#refill();
        },
      );
      this.#unsettled.add(claim);
      claim.keeper.start();
      batch.push(claim);
    }
    // Stopped while the batch was out: none of it runs here.
    if (this.#stopped) {
      await Promise.all(batch.map((claim) => this.handBack(claim)));
      return;
    }
    for (const claim of batch) {
      host.schedule(claim).catch(async (error: unknown) => {
        await this.handBack(claim).catch(() => undefined);
        host.refused(claim, error);
      });
    }
  }
}
