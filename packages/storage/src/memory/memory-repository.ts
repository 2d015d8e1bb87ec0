import { randomUUID } from 'node:crypto';
import { InvalidInputError, quoteInput, realClock, type Clock } from '@horae/core';
import { InvalidStateError, LeaseLostError, RepositoryError, TaskNotDueError, TaskNotFoundError, leaseExpiredBeforeStart } from '../contract/errors.js';
import { firstInOrder } from '../node/first-in-order.js';
import type {
  ChangePage,
  ClaimDueOptions,
  ClaimOptions,
  InsertResult,
  LimitedClaim,
  LimitedClaimDueOptions,
  LimitedClaimOptions,
  ListOptions,
  ListPage,
  ReclaimOptions,
  ReleaseOptions,
  Repository,
  WorkLimiter,
} from '../contract/repository.js';
import { MemoryScheduleTable } from './memory-schedule-store.js';
import type { HookOutbox, HookOutboxProvider } from '../hooks/hook-outbox.js';
import { MemoryHookOutbox } from './memory-hook-outbox.js';
import type { TaskSearch, TaskSearchProvider } from '../contract/task-search.js';
import { MemoryTaskSearch } from './memory-task-search.js';
import type { ListSchedulesOptions, Schedule, ScheduleAdvance, ScheduleDefinition, ScheduleStore, UpsertScheduleResult } from '../schedules/schedule-store.js';
import {
  ALL_TASK_STATES,
  MAX_CHECK_INS_PER_ATTEMPT,
  isTerminal,
  poisonTaskError,
  type AttemptOutcome,
  type NewTask,
  type TaskAttempt,
  type TaskError,
  type TaskInfo,
  type TaskPatch,
  type TaskProgress,
  type TaskState,
} from '../contract/task-info.js';
import {
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_ERROR_STACK_LENGTH,
  MAX_ERROR_NAME_LENGTH,
  checkAgingMs,
  checkMaxParamBytes,
  checkMaxUnstartedClaims,
  normalizeNewTask,
  validateLeaseMs,
  validateLimit,
  validateOwner,
  validatePatch,
  type WriteLimits,
} from '../contract/validation.js';
import { normalizeScheduleDefinition } from '../schedules/schedule-definition.js';
import { pickWithinLimits, validateMaxWorking, validateWorkLimits } from '../contract/work-limits.js';

/** Options of {@link MemoryRepository}. */
export interface MemoryRepositoryOptions {
  /**
   * The "database clock": createdAt, updatedAt, lease.until, progress.at, the due checks of `claim` (a task not due
   * by it is refused with TaskNotDueError) and `claimDue`, the aged claim order, and the expiry checks of
   * `reclaimExpired` read it. Pass the VirtualClock of `@horae/core/testing` to drive them
   * by hand. Peers opened with {@link MemoryRepository.openPeer} share it, as clients of one database do.
   *
   * @defaultValue `realClock`
   */
  clock?: Clock;
  /**
   * The most bytes of UTF-8 JSON a task's or a schedule's param may take; a larger one is refused with
   * InvalidInputError before anything is written.
   *
   * @defaultValue `DEFAULT_MAX_PARAM_BYTES` (1 MiB)
   */
  maxParamBytes?: number;
}

/** A task as stored: its record and the sequence number of its last change. */
interface StoredTask {
  /** The latest state of the task. */
  task: TaskInfo;
  /** The sequence number of its last change. */
  seq: number;
}

/**
 * The shared state of one in-memory "database": what every client opened on it sees.
 *
 * `tasks` is kept in change order: every write deletes and re-inserts the task's entry, so iterating the
 * map walks the change log from the oldest change to the newest, each task once, at its latest change.
 */
class MemoryStore {
  readonly tasks = new Map<string, StoredTask>();
  /** The Initialized tasks (as stored in `tasks`): what claims look at, without walking every ended task. */
  readonly initialized = new Map<string, TaskInfo>();
  /** uniqueKey → id of the live (non-terminal) task holding it. */
  readonly liveKeys = new Map<string, string>();
  /** task id → its execution history, oldest run first; deleted with the task. */
  readonly attempts = new Map<string, TaskAttempt[]>();
  /** The sequence number of the last change; the change cursor is this number in decimal. */
  seq = 0;
  /** The recurring schedules (the {@link ScheduleStore} capability), on the same clock. */
  readonly schedules: MemoryScheduleTable;
  /** The status hook deliveries (the {@link HookOutbox}); each peer reaches them through its own guard. */
  readonly hookOutbox: MemoryHookOutbox;

  constructor(readonly clock: Clock) {
    this.schedules = new MemoryScheduleTable(clock);
    this.hookOutbox = new MemoryHookOutbox(clock);
  }
}

/** The internal option through which {@link MemoryRepository.openPeer} shares its store. */
const SHARED_STORE = Symbol('sharedStore');

type InternalOptions = MemoryRepositoryOptions & { [SHARED_STORE]?: MemoryStore };

/**
 * The reference implementation of {@link Repository}, held in this process's memory: exact (it passes the
 * whole conformance suite), for tests, examples and single-process use where losing the tasks at exit is
 * acceptable.
 *
 * Every method runs its checks and its write in one synchronous step on a later microtask, so interleaved
 * calls are serialized as a database's conditional writes would be: of concurrent claims exactly one wins.
 * Tasks are stored and returned as deep copies: a caller mutating a returned task changes nothing stored.
 *
 * ### Examples
 * ```ts
 * const repository = new MemoryRepository();
 * const { task } = await repository.insert({ workId: 'send-mail', scheduledAt: new Date(), param: { to: 'a@b.c' } });
 * const peer = repository.openPeer(); // a second "connection" to the same store, as another node would have
 * const claimed = await peer.claim(task.id, { owner: 'node-b', leaseMs: 30_000 });
 * ```
 */
export class MemoryRepository implements Repository, ScheduleStore, WorkLimiter, HookOutboxProvider, TaskSearchProvider {
  readonly #store: MemoryStore;
  /** The most bytes of UTF-8 JSON a param may take (the `maxParamBytes` option). */
  readonly maxParamBytes: number;
  readonly #limits: WriteLimits;
  #unavailable = false;
  #hookOutbox: MemoryHookOutbox | undefined;
  #taskSearch: MemoryTaskSearch | undefined;

  /**
   * @param options - the database clock, the param bound
   * @throws InvalidInputError on an invalid `maxParamBytes`
   */
  constructor(options: MemoryRepositoryOptions = {}) {
    this.#store = (options as InternalOptions)[SHARED_STORE] ?? new MemoryStore(options.clock ?? realClock);
    this.maxParamBytes = checkMaxParamBytes(options.maxParamBytes);
    this.#limits = { maxParamBytes: this.maxParamBytes };
  }

  /**
   * Opens another client on the same store, as a second node connected to the same database: it sees
   * every write of this one, shares its clock, and has its own {@link MemoryRepository.setUnavailable} switch.
   *
   * @returns a repository sharing this one's tasks
   */
  openPeer(): MemoryRepository {
    return new MemoryRepository({ [SHARED_STORE]: this.#store, maxParamBytes: this.maxParamBytes } as InternalOptions);
  }

  /**
   * A testing aid that simulates this client losing its database: while `unavailable` is true every method
   * but `close` rejects with RepositoryError and changes nothing. Peers keep working.
   *
   * @param unavailable - true to fail every call, false to recover
   */
  setUnavailable(unavailable: boolean): void {
    this.#unavailable = unavailable;
  }

  /** {@inheritDoc Repository.insert} */
  insert(task: NewTask): Promise<InsertResult> {
    return this.#run('insert', () => {
      const normalized = normalizeNewTask(task, this.#limits);
      if (normalized.id !== undefined && this.#store.tasks.has(normalized.id)) throw duplicateId(normalized.id);
      return this.#insertNormalized(normalized);
    });
  }

  /** {@inheritDoc Repository.insertMany} */
  insertMany(tasks: readonly NewTask[]): Promise<InsertResult[]> {
    return this.#run('insertMany', () => {
      const input: unknown = tasks;
      if (!Array.isArray(input)) throw new InvalidInputError('insertMany takes an array of tasks');
      // Validate everything before writing anything: one bad input writes nothing.
      const normalized = tasks.map((task) => normalizeNewTask(task, this.#limits));
      const ids = new Set<string>();
      for (const { id } of normalized) {
        if (id === undefined) continue;
        if (ids.has(id) || this.#store.tasks.has(id)) throw duplicateId(id);
        ids.add(id);
      }
      return normalized.map((task) => this.#insertNormalized(task));
    });
  }

  /** {@inheritDoc Repository.getById} */
  getById(id: string): Promise<TaskInfo> {
    return this.#run('getById', () => copy(this.#get(id).task));
  }

  /** {@inheritDoc Repository.getUpdatedSince} */
  getUpdatedSince(cursor: string | null, limit: number): Promise<ChangePage> {
    return this.#run('getUpdatedSince', () => {
      validateLimit(limit);
      const from = cursor === null ? 0 : parseChangeCursor(cursor);
      const tasks: TaskInfo[] = [];
      let last = from;
      for (const stored of this.#store.tasks.values()) {
        if (stored.seq <= from) continue;
        if (tasks.length === limit) break;
        tasks.push(copy(stored.task));
        last = stored.seq;
      }
      return { tasks, cursor: tasks.length === 0 && cursor !== null ? cursor : String(last) };
    });
  }

  /** {@inheritDoc Repository.getCursor} */
  getCursor(): Promise<string> {
    return this.#run('getCursor', () => String(this.#store.seq));
  }

  /** {@inheritDoc Repository.listDue} */
  listDue(options: { before: Date; limit: number; after?: string | null }): Promise<ListPage> {
    return this.#run('listDue', () => {
      assertDate(options.before, 'before');
      validateLimit(options.limit);
      const before = options.before.getTime();
      const due = [...this.#store.tasks.values()]
        .map((stored) => stored.task)
        .filter((task) => task.state === 'Initialized' && task.scheduledAt.getTime() < before);
      return page(due, (task) => task.scheduledAt.getTime(), options.limit, options.after ?? null);
    });
  }

  /** {@inheritDoc Repository.claim} */
  claim(id: string, options: ClaimOptions & { ifScheduledAt?: Date }): Promise<TaskInfo | null> {
    return this.#run('claim', () => {
      validateClaimOptions(options);
      if (options.ifScheduledAt !== undefined) assertDate(options.ifScheduledAt, 'ifScheduledAt');
      const { task } = this.#get(id);
      if (task.state !== 'Initialized') return null;
      if (options.ifScheduledAt !== undefined && options.ifScheduledAt.getTime() !== task.scheduledAt.getTime()) return null;
      this.#assertDue(task);
      return copy(this.#claimTask(task, options, true));
    });
  }

  /** {@inheritDoc Repository.claimDue} */
  claimDue(options: ClaimDueOptions): Promise<TaskInfo[]> {
    return this.#run('claimDue', () => {
      validateClaimOptions(options);
      validateLimit(options.limit);
      const order = claimOrder(checkAgingMs(options.agingMs));
      const workIds = options.workIds === undefined ? null : new Set(options.workIds);
      const now = this.#store.clock.now();
      // One pass over the due tasks keeping the first `limit` in the aged order: a batch of a large backlog costs
      // no sort of all of it. The aged key does not depend on now, so the order of two tasks never changes while
      // both wait.
      const due = firstInOrder(this.#dueInitialized(now, workIds), options.limit, order);
      return due.map((task) => copy(this.#claimTask(task, options, false)));
    });
  }

  /**
   * {@inheritDoc Repository.markAsStarted}
   *
   * @implementation Calls are serialized one by one, so a call made together with others is fenced on its own.
   */
  markAsStarted(id: string, token: string): Promise<TaskInfo> {
    return this.#run('markAsStarted', () => {
      const task = this.#getHeld(id, token);
      if (task.lease!.started) return copy(task);
      if (task.lease!.until.getTime() <= this.#store.clock.now()) throw leaseExpiredBeforeStart(id);
      return copy(this.#startTask(task));
    });
  }

  /** {@inheritDoc WorkLimiter.claimWithinLimit} */
  claimWithinLimit(id: string, options: LimitedClaimOptions): Promise<LimitedClaim> {
    return this.#run('claimWithinLimit', () => {
      validateClaimOptions(options);
      validateMaxWorking(options.maxWorking);
      if (options.ifScheduledAt !== undefined) assertDate(options.ifScheduledAt, 'ifScheduledAt');
      const { task } = this.#get(id);
      if (task.state !== 'Initialized') return null;
      if (options.ifScheduledAt !== undefined && options.ifScheduledAt.getTime() !== task.scheduledAt.getTime()) return null;
      // Not due is a fact of the task, the limit one of the moment: the caller re-arms its timer either way.
      this.#assertDue(task);
      if (this.#workingOf(task.workId) >= options.maxWorking) return { refused: 'limit' };
      return { task: copy(this.#claimTask(task, options, true)) };
    });
  }

  /** {@inheritDoc WorkLimiter.claimDueWithinLimits} */
  claimDueWithinLimits(options: LimitedClaimDueOptions): Promise<TaskInfo[]> {
    return this.#run('claimDueWithinLimits', () => {
      validateClaimOptions(options);
      validateLimit(options.limit);
      const limits = validateWorkLimits(options.workLimits);
      const order = claimOrder(checkAgingMs(options.agingMs));
      const workIds = options.workIds === undefined ? null : new Set(options.workIds);
      const now = this.#store.clock.now();
      const due = [...this.#dueInitialized(now, workIds)].sort(order);
      const free = new Map([...limits].map(([workId, limit]) => [workId, limit - this.#workingOf(workId)]));
      const taken = new Set(pickWithinLimits(due, free, options.limit));
      return due.filter((task) => taken.has(task.id)).map((task) => copy(this.#claimTask(task, options, false)));
    });
  }

  /** {@inheritDoc Repository.renewLease} */
  renewLease(id: string, token: string, leaseMs: number): Promise<TaskInfo> {
    return this.#run('renewLease', () => {
      validateLeaseMs(leaseMs);
      const task = this.#getHeld(id, token);
      const lease = task.lease!;
      return copy(this.#write({ ...task, lease: { ...lease, until: new Date(this.#store.clock.now() + leaseMs) } }));
    });
  }

  /** {@inheritDoc Repository.release} */
  release(id: string, token: string, options: ReleaseOptions): Promise<TaskInfo> {
    return this.#run('release', () => {
      if (options === null || typeof options !== 'object') throw new InvalidInputError('release takes options { runAt }');
      assertDate(options.runAt, 'runAt');
      const error = options.error === undefined ? undefined : boundTaskError(options.error);
      const task = this.#getHeld(id, token);
      // A claim whose run never started has no record to close and spent no attempt to give back.
      const started = task.lease!.started;
      if (started) this.#closeAttempt(id, error === undefined ? 'released' : 'retried', error ?? null);
      return copy(
        this.#write({
          ...task,
          state: 'Initialized',
          scheduledAt: new Date(options.runAt.getTime()),
          lease: null,
          lastError: error ?? task.lastError,
          attempt: started && options.refundAttempt === true ? Math.max(0, task.attempt - 1) : task.attempt,
        }),
      );
    });
  }

  /** {@inheritDoc Repository.markAsDone} */
  markAsDone(id: string, token: string): Promise<TaskInfo> {
    return this.#run('markAsDone', () => {
      const task = this.#getStarted(id, token, 'mark as done');
      this.#closeAttempt(id, 'succeeded', null);
      return copy(this.#write({ ...task, state: 'Done', lease: null }));
    });
  }

  /** {@inheritDoc Repository.markAsFailed} */
  markAsFailed(id: string, error: TaskError, token?: string): Promise<TaskInfo> {
    return this.#run('markAsFailed', () => {
      const lastError = boundTaskError(error);
      let task: TaskInfo;
      if (token === undefined) {
        task = this.#get(id).task;
        if (task.state !== 'Initialized') throw new InvalidStateError(id, task.state, 'fail without a lease token');
      } else {
        task = this.#getStarted(id, token, 'fail');
        this.#closeAttempt(id, 'failed', lastError);
      }
      return copy(this.#write({ ...task, state: 'Failed', lease: null, lastError }));
    });
  }

  /**
   * {@inheritDoc Repository.markAsCancelled}
   *
   * @implementation A task already terminal is returned with `cancelled: false` whether or not a token is given.
   * The reason is not stored: TaskInfo has no field for it.
   */
  markAsCancelled(id: string, options: { token?: string; reason?: string } = {}): Promise<{ task: TaskInfo; cancelled: boolean }> {
    return this.#run('markAsCancelled', () => {
      const { task } = this.#get(id);
      if (isTerminal(task.state)) return { task: copy(task), cancelled: false };
      if (options.token !== undefined) this.#getHeld(id, options.token);
      // A claim whose run never started has no record to close.
      if (task.state === 'Working' && task.lease?.started === true) this.#closeAttempt(id, 'cancelled', null);
      return { task: copy(this.#write({ ...task, state: 'Cancelled', lease: null })), cancelled: true };
    });
  }

  /** {@inheritDoc Repository.update} */
  update(id: string, patch: TaskPatch): Promise<TaskInfo> {
    return this.#run('update', () => {
      validatePatch(patch, this.#limits);
      const { task } = this.#get(id);
      if (task.state !== 'Initialized') throw new InvalidStateError(id, task.state, 'update');
      const next: TaskInfo = { ...task };
      if (patch.scheduledAt !== undefined) next.scheduledAt = new Date(patch.scheduledAt.getTime());
      if (patch.param !== undefined) next.param = structuredClone(patch.param);
      if (patch.priority !== undefined) next.priority = patch.priority;
      return copy(this.#write(next));
    });
  }

  /**
   * {@inheritDoc Repository.setProgress}
   *
   * @throws TaskNotFoundError when no task has the id
   * @throws InvalidInputError when completed or total is not a finite number, or message not a string
   */
  setProgress(id: string, token: string, progress: Omit<TaskProgress, 'at'>): Promise<void> {
    return this.#run('setProgress', () => {
      const next = validateProgress(progress);
      const task = this.#getHeld(id, token);
      const at = new Date(this.#store.clock.now());
      if (next.message !== undefined) this.#checkIn(id, next.message, at);
      this.#write({ ...task, progress: { ...next, at } });
    });
  }

  /**
   * {@inheritDoc Repository.reclaimExpired}
   *
   * @implementation A lease is expired when `until <= now`, so a lease of 0 ms is expired at once. The oldest
   * expiries are reclaimed first; a reclaimed started run's lastError says `LEASE_EXPIRED`. An unstarted claim sent
   * back to Initialized keeps its lastError: no run failed.
   */
  reclaimExpired(options: ReclaimOptions = {}): Promise<TaskInfo[]> {
    return this.#run('reclaimExpired', () => {
      if (options === null || typeof options !== 'object') throw new InvalidInputError('reclaimExpired takes options { limit?, maxUnstartedClaims? }');
      if (options.limit !== undefined) validateLimit(options.limit);
      const maxUnstartedClaims = checkMaxUnstartedClaims(options.maxUnstartedClaims);
      const now = this.#store.clock.now();
      const expired = [...this.#store.tasks.values()]
        .map((stored) => stored.task)
        .filter((task) => task.state === 'Working' && task.lease !== null && task.lease.until.getTime() <= now)
        .sort((a, b) => a.lease!.until.getTime() - b.lease!.until.getTime() || compareText(a.id, b.id))
        .slice(0, options.limit ?? Number.POSITIVE_INFINITY);
      const lastError: TaskError = { message: 'lease expired', code: 'LEASE_EXPIRED' };
      return expired.map((task) => {
        if (!task.lease!.started) {
          // The node died (or stalled) holding a claim ahead: no attempt was spent, but a task that keeps killing
          // its claimers before they start it must not be claimed forever.
          const unstartedClaims = task.unstartedClaims + 1;
          return copy(
            unstartedClaims >= maxUnstartedClaims
              ? this.#write({ ...task, state: 'Failed', lease: null, unstartedClaims, lastError: poisonTaskError(unstartedClaims) })
              : this.#write({ ...task, state: 'Initialized', scheduledAt: new Date(now), lease: null, unstartedClaims }),
          );
        }
        this.#closeAttempt(task.id, 'lease-expired', lastError);
        return copy(
          task.attempt >= task.maxAttempts
            ? this.#write({ ...task, state: 'Failed', lease: null, lastError })
            : this.#write({ ...task, state: 'Initialized', scheduledAt: new Date(now), lease: null, lastError }),
        );
      });
    });
  }

  /** {@inheritDoc Repository.list} */
  list(options: ListOptions = {}): Promise<ListPage> {
    return this.#run('list', () => {
      const limit = options.limit ?? 100;
      validateLimit(limit);
      const tasks = [...this.#store.tasks.values()]
        .map((stored) => stored.task)
        .filter((task) => (options.state === undefined || task.state === options.state) && (options.workId === undefined || task.workId === options.workId));
      return page(tasks, (task) => task.createdAt.getTime(), limit, options.after ?? null);
    });
  }

  /** {@inheritDoc Repository.countByState} */
  countByState(): Promise<Record<TaskState, number>> {
    return this.#run('countByState', () => {
      const counts = Object.fromEntries(ALL_TASK_STATES.map((state) => [state, 0])) as Record<TaskState, number>;
      for (const { task } of this.#store.tasks.values()) counts[task.state]++;
      return counts;
    });
  }

  /** {@inheritDoc Repository.listAttempts} */
  listAttempts(taskId: string): Promise<TaskAttempt[]> {
    return this.#run('listAttempts', () => {
      this.#get(taskId);
      return structuredClone(this.#store.attempts.get(taskId) ?? []);
    });
  }

  /** {@inheritDoc Repository.deleteTerminalBefore} */
  deleteTerminalBefore(before: Date): Promise<number> {
    return this.#run('deleteTerminalBefore', () => {
      assertDate(before, 'before');
      let deleted = 0;
      for (const [id, { task }] of this.#store.tasks) {
        if (isTerminal(task.state) && task.updatedAt.getTime() < before.getTime()) {
          this.#store.tasks.delete(id);
          this.#store.attempts.delete(id);
          deleted++;
        }
      }
      return deleted;
    });
  }

  /** {@inheritDoc ScheduleStore.upsertSchedule} */
  upsertSchedule(definition: ScheduleDefinition): Promise<UpsertScheduleResult> {
    return this.#run('upsertSchedule', () => {
      normalizeScheduleDefinition(definition, this.#limits);
      return this.#store.schedules.upsert(definition);
    });
  }

  /** {@inheritDoc ScheduleStore.getSchedule} */
  getSchedule(name: string): Promise<Schedule> {
    return this.#run('getSchedule', () => this.#store.schedules.get(name));
  }

  /** {@inheritDoc ScheduleStore.listSchedules} */
  listSchedules(options?: ListSchedulesOptions): Promise<Schedule[]> {
    return this.#run('listSchedules', () => this.#store.schedules.list(options));
  }

  /** {@inheritDoc ScheduleStore.setSchedulePaused} */
  setSchedulePaused(name: string, paused: boolean): Promise<Schedule> {
    return this.#run('setSchedulePaused', () => this.#store.schedules.setPaused(name, paused));
  }

  /** {@inheritDoc ScheduleStore.removeSchedule} */
  removeSchedule(name: string): Promise<void> {
    return this.#run('removeSchedule', () => this.#store.schedules.remove(name));
  }

  /** {@inheritDoc ScheduleStore.pullScheduleForward} */
  pullScheduleForward(name: string, withinMs: number): Promise<Schedule> {
    return this.#run('pullScheduleForward', () => this.#store.schedules.pullForward(name, withinMs));
  }

  /** {@inheritDoc ScheduleStore.advanceSchedule} */
  advanceSchedule(name: string, advance: ScheduleAdvance): Promise<Schedule | null> {
    return this.#run('advanceSchedule', () => this.#store.schedules.advance(name, advance));
  }

  /** Does nothing: there is no connection to release. Works even while {@link MemoryRepository.setUnavailable} is on. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Runs `body` on a later microtask, all at once: the checks and the write of one call never interleave
   * with another call's, which is what makes a compare-and-set here as exact as a database's.
   */
  /** {@inheritDoc HookOutboxProvider.hookOutbox} */
  hookOutbox(): HookOutbox {
    this.#hookOutbox ??= this.#store.hookOutbox.peer((operation) => {
      if (this.#unavailable) throw new RepositoryError(`${operation} failed: the memory repository is set unavailable`);
    });
    return this.#hookOutbox;
  }

  /** The task search over this store (a walk over every task per call), the same object on every call. */
  taskSearch(): TaskSearch {
    this.#taskSearch ??= new MemoryTaskSearch({ read: (operation, body) => this.#run(operation, () => body([...this.#store.tasks.values()].map((stored) => stored.task))) });
    return this.#taskSearch;
  }

  #run<T>(operation: string, body: () => T): Promise<T> {
    return Promise.resolve().then(() => {
      if (this.#unavailable) throw new RepositoryError(`${operation} failed: the memory repository is set unavailable`);
      return body();
    });
  }

  /** How many tasks of `workId` are Working (expired leases included, until reclaimed). */
  #workingOf(workId: string): number {
    let working = 0;
    for (const { task } of this.#store.tasks.values()) if (task.state === 'Working' && task.workId === workId) working++;
    return working;
  }

  #get(id: string): StoredTask {
    const stored = typeof id === 'string' ? this.#store.tasks.get(id) : undefined;
    if (stored === undefined) throw new TaskNotFoundError(String(id));
    return stored;
  }

  /** The task, when it is Working under `token`. @throws LeaseLostError otherwise */
  #getHeld(id: string, token: string): TaskInfo {
    const { task } = this.#get(id);
    if (task.state !== 'Working' || task.lease === null || typeof token !== 'string' || task.lease.token !== token) throw new LeaseLostError(id);
    return task;
  }

  #insertNormalized(normalized: ReturnType<typeof normalizeNewTask>): InsertResult {
    if (normalized.uniqueKey !== null) {
      const holder = this.#store.liveKeys.get(normalized.uniqueKey);
      if (holder !== undefined) return { task: copy(this.#get(holder).task), created: false };
    }
    const now = new Date(this.#store.clock.now());
    const task: TaskInfo = {
      id: normalized.id ?? randomUUID(),
      workId: normalized.workId,
      param: structuredClone(normalized.param),
      scheduledAt: new Date(normalized.scheduledAt.getTime()),
      state: 'Initialized',
      priority: normalized.priority,
      attempt: 0,
      claims: 0,
      unstartedClaims: 0,
      maxAttempts: normalized.maxAttempts,
      lease: null,
      lastError: null,
      uniqueKey: normalized.uniqueKey,
      progress: null,
      createdAt: now,
      updatedAt: now,
      kind: normalized.kind,
      scheduleName: normalized.scheduleName,
    };
    return { task: copy(this.#write(task)), created: true };
  }

  /** The task when it is Working under `token` with its run started. @throws LeaseLostError, InvalidStateError */
  #getStarted(id: string, token: string, action: string): TaskInfo {
    const task = this.#getHeld(id, token);
    if (!task.lease!.started) throw new InvalidStateError(id, 'Working, claimed ahead with its run not started', action);
    return task;
  }

  /** @throws TaskNotDueError when `task` is not due by the store's clock */
  #assertDue(task: TaskInfo): void {
    const dueInMs = task.scheduledAt.getTime() - this.#store.clock.now();
    if (dueInMs > 0) throw new TaskNotDueError(task.id, dueInMs);
  }

  /**
   * Initialized → Working under a new lease, counted in `claims`, in one write; with `start` the run starts in that
   * same write (a claim by id), else the claim is ahead, unstarted (claimDue).
   */
  #claimTask(task: TaskInfo, options: ClaimOptions, start: boolean): TaskInfo {
    const until = new Date(this.#store.clock.now() + options.leaseMs);
    // What the task reports is its current claim's run: an earlier run's progress goes.
    const claimed: TaskInfo = { ...task, state: 'Working', claims: task.claims + 1, lease: { owner: options.owner, until, token: randomUUID(), started: false }, progress: null };
    return start ? this.#startTask(claimed) : this.#write(claimed);
  }

  /** Starts the run of a claim, in one write: counts the attempt, resets `unstartedClaims`, and opens its `running` record. */
  #startTask(task: TaskInfo): TaskInfo {
    const started = this.#write({ ...task, attempt: task.attempt + 1, unstartedClaims: 0, lease: { ...task.lease!, started: true } });
    const history = this.#store.attempts.get(task.id) ?? [];
    history.push({
      taskId: task.id,
      run: history.length + 1,
      attempt: started.attempt,
      node: started.lease!.owner,
      startedAt: new Date(started.updatedAt.getTime()),
      endedAt: null,
      outcome: 'running',
      error: null,
      checkIns: [],
    });
    this.#store.attempts.set(task.id, history);
    return started;
  }

  /** The record of the run in progress of `id`, if any. */
  #runningAttempt(id: string): TaskAttempt | undefined {
    const last = this.#store.attempts.get(id)?.at(-1);
    return last?.outcome === 'running' ? last : undefined;
  }

  /** Ends the running record of `id`: called in the same synchronous step as the transition it records. */
  #closeAttempt(id: string, outcome: Exclude<AttemptOutcome, 'running'>, error: TaskError | null): void {
    const attempt = this.#runningAttempt(id);
    if (attempt === undefined) return;
    // endedAt never precedes startedAt, even when a virtual clock was set back in between.
    attempt.endedAt = new Date(Math.max(this.#store.clock.now(), attempt.startedAt.getTime()));
    attempt.outcome = outcome;
    attempt.error = error === null ? null : structuredClone(error);
  }

  /** Appends a check-in to the running record of `id` unless it repeats the last one; keeps the latest ones. */
  #checkIn(id: string, message: string, at: Date): void {
    const attempt = this.#runningAttempt(id);
    if (attempt === undefined || attempt.checkIns.at(-1)?.message === message) return;
    attempt.checkIns.push({ at: new Date(at.getTime()), message });
    if (attempt.checkIns.length > MAX_CHECK_INS_PER_ATTEMPT) attempt.checkIns.splice(0, attempt.checkIns.length - MAX_CHECK_INS_PER_ATTEMPT);
  }

  /** The Initialized tasks due at `now`, of the given works (all when null), in no particular order. */
  *#dueInitialized(now: number, workIds: ReadonlySet<string> | null): Generator<TaskInfo> {
    for (const task of this.#store.initialized.values()) {
      if (task.scheduledAt.getTime() <= now && (workIds === null || workIds.has(task.workId))) yield task;
    }
  }

  /**
   * Stores `task` as its latest state: a new change at the end of the change log, updatedAt from the
   * store's clock, and the uniqueKey index kept to live tasks only.
   */
  #write(task: TaskInfo): TaskInfo {
    const store = this.#store;
    const stored: TaskInfo = { ...task, updatedAt: new Date(store.clock.now()) };
    // createdAt stays the insert time even when the clock went back since.
    if (stored.updatedAt.getTime() < stored.createdAt.getTime()) stored.updatedAt = new Date(stored.createdAt.getTime());
    store.seq++;
    store.tasks.delete(task.id);
    store.tasks.set(task.id, { task: stored, seq: store.seq });
    if (stored.state === 'Initialized') store.initialized.set(stored.id, stored);
    else store.initialized.delete(stored.id);
    if (stored.uniqueKey !== null) {
      if (!isTerminal(stored.state)) store.liveKeys.set(stored.uniqueKey, stored.id);
      else if (store.liveKeys.get(stored.uniqueKey) === stored.id) store.liveKeys.delete(stored.uniqueKey);
    }
    return stored;
  }
}

/** A deep copy, so that no caller holds a reference into the store. */
function copy(task: TaskInfo): TaskInfo {
  return structuredClone(task);
}

function duplicateId(id: string): InvalidInputError {
  return new InvalidInputError(`a task with the id ${quoteInput(id)} already exists`);
}

function assertDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

function validateClaimOptions(options: ClaimOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('claim options { owner, leaseMs } are required');
  validateOwner(options.owner);
  validateLeaseMs(options.leaseMs);
}

function validateProgress(progress: Omit<TaskProgress, 'at'>): Omit<TaskProgress, 'at'> {
  if (progress === null || typeof progress !== 'object') throw new InvalidInputError('progress must be an object { completed, total }');
  const { completed, total, message } = progress;
  if (typeof completed !== 'number' || !Number.isFinite(completed)) throw new InvalidInputError(`progress.completed must be a finite number, got ${quoteInput(completed)}`);
  if (typeof total !== 'number' || !Number.isFinite(total)) throw new InvalidInputError(`progress.total must be a finite number, got ${quoteInput(total)}`);
  if (message !== undefined && typeof message !== 'string') throw new InvalidInputError('progress.message must be a string');
  return message === undefined ? { completed, total } : { completed, total, message };
}

/** Checks a {@link TaskError} and cuts its message and stack to the stored bounds. */
function boundTaskError(error: TaskError): TaskError {
  if (error === null || typeof error !== 'object' || typeof error.message !== 'string') throw new InvalidInputError('an error must be an object with a string message');
  const bounded: TaskError = { message: error.message.slice(0, MAX_ERROR_MESSAGE_LENGTH) };
  if (typeof error.name === 'string') bounded.name = error.name.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error.code === 'string') bounded.code = error.code.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error.stack === 'string') bounded.stack = error.stack.slice(0, MAX_ERROR_STACK_LENGTH);
  return bounded;
}

function parseChangeCursor(cursor: string): number {
  if (typeof cursor !== 'string' || !/^\d{1,15}$/.test(cursor)) throw new InvalidInputError(`${quoteInput(cursor)} is not a change cursor of this repository`);
  return Number(cursor);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * claimDue's order: highest aged priority, then earliest due, then oldest, then id. The aged priority
 * `priority + (now − scheduledAt) / agingMs`, multiplied by agingMs (> 0, so the order holds), orders as
 * `priority × agingMs − scheduledAt`: it needs no now, and for integer priorities and agingMs it is an exact integer,
 * so two tasks whose aged priorities tie exactly fall to the due time as the contract says, where a float division
 * would break the tie by rounding noise. With agingMs Infinity: priority alone.
 */
function claimOrder(agingMs: number): (a: TaskInfo, b: TaskInfo) => number {
  const aged = agingMs === Number.POSITIVE_INFINITY ? (task: TaskInfo): number => task.priority : (task: TaskInfo): number => task.priority * agingMs - task.scheduledAt.getTime();
  return (a, b) =>
    aged(b) - aged(a) || a.scheduledAt.getTime() - b.scheduledAt.getTime() || a.createdAt.getTime() - b.createdAt.getTime() || compareText(a.id, b.id);
}

/** A keyset position: a time and an id, encoded as `<ms>:<id>`. */
interface Position {
  at: number;
  id: string;
}

function encodePosition(position: Position): string {
  return `${position.at}:${position.id}`;
}

function decodePosition(after: string): Position {
  const colon = typeof after === 'string' ? after.indexOf(':') : -1;
  const at = colon > 0 ? Number(after.slice(0, colon)) : Number.NaN;
  if (!Number.isSafeInteger(at)) throw new InvalidInputError(`${quoteInput(after)} is not a page cursor of this repository`);
  return { at, id: after.slice(colon + 1) };
}

/** One page of `tasks` ordered by (`key`, id), after the keyset position `after`. */
function page(tasks: TaskInfo[], key: (task: TaskInfo) => number, limit: number, after: string | null): ListPage {
  const from = after === null ? null : decodePosition(after);
  const ordered = tasks
    .filter((task) => from === null || key(task) > from.at || (key(task) === from.at && compareText(task.id, from.id) > 0))
    .sort((a, b) => key(a) - key(b) || compareText(a.id, b.id));
  const slice = ordered.slice(0, limit);
  const last = slice[slice.length - 1];
  const next = ordered.length > limit && last !== undefined ? encodePosition({ at: key(last), id: last.id }) : null;
  return { tasks: slice.map(copy), next };
}
