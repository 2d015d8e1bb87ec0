import type { Clock, ClockTimer } from '@horae/core';
import type { DurableWriter } from './durable-write.js';
import type { StorageEvents, SyncReport } from './events.js';
import type { ChangePage, ListPage, Repository } from '../contract/repository.js';
import { isChangeNotifier } from '../contract/repository.js';
import { isTerminal, type TaskInfo } from '../contract/task-info.js';

/** Where a task is on this node, as sync sees it. */
export type LocalPhase = 'inserting' | 'scheduled' | 'running' | 'remote';

/** What this node holds of one task. */
export interface LocalTaskView {
  /** `inserting`: being written at schedule time; `scheduled`: a local timer is armed; `running`: this node runs it; `remote`: a handle waits for another node to end it. */
  phase: LocalPhase;
  /** The due time of the local timer (epoch ms). */
  scheduledAt: number;
  /** The priority of the local timer. */
  priority: number;
}

/** What sync does about one changed row. */
export type SyncAction =
  | 'ignore'
  | 'schedule'
  | 'reschedule'
  | 'drop-ended'
  | 'drop-claimed'
  | 'abort-run'
  | 'settle-remote'
  | 'unknown-work';

/** What {@link decideSync} needs to know about this node. */
export interface SyncDecisionContext {
  /** This node's id. */
  nodeId: string;
  /** Tasks due before this time (epoch ms) are held in memory; later ones are left in the repository. */
  windowEnd: number;
  /** Whether this node can run a workId. */
  knowsWork: (workId: string) => boolean;
}

/**
 * Decides what sync does with one row read from the repository: a pure function of the row and what this
 * node holds.
 *
 * Rules: a task this node runs is never dropped nor rescheduled (only a cancel written elsewhere aborts it);
 * an Initialized task due within the window that this node does not hold is scheduled, when its workId is
 * known here; a held timer whose due time or priority changed elsewhere is rescheduled; a held timer of a task
 * that ended, or that another node claimed, is dropped.
 *
 * @param task - the row, in its latest state
 * @param local - what this node holds of it, if anything
 * @param context - this node's id, the window and the registry
 * @returns the action to take
 */
export function decideSync(task: TaskInfo, local: LocalTaskView | undefined, context: SyncDecisionContext): SyncAction {
  const due = task.scheduledAt.getTime();
  if (local === undefined || local.phase === 'remote') {
    if (local !== undefined && isTerminal(task.state)) return 'settle-remote';
    if (task.state !== 'Initialized') return 'ignore';
    if (!context.knowsWork(task.workId)) return 'unknown-work';
    return due < context.windowEnd ? 'schedule' : 'ignore';
  }
  switch (local.phase) {
    case 'inserting':
      return 'ignore';
    case 'running':
      // Never cancel this node's own run (gokugen's bug); a cancel written by another node aborts it.
      return task.state === 'Cancelled' ? 'abort-run' : 'ignore';
    case 'scheduled':
      if (isTerminal(task.state)) return 'drop-ended';
      if (task.state === 'Working') return task.lease?.owner === context.nodeId ? 'ignore' : 'drop-claimed';
      return due !== local.scheduledAt || task.priority !== local.priority ? 'reschedule' : 'ignore';
  }
}

/** What sync needs from the storage middleware that owns it. */
export interface SyncHost {
  /** The repository read. */
  readonly repository: Repository;
  /** The clock the loops are armed on. */
  readonly clock: Clock;
  /** Runs repository calls through the outage retry. */
  readonly durable: DurableWriter;
  /** This node's id. */
  readonly nodeId: string;
  /** What this node holds of a task. */
  local(taskId: string): LocalTaskView | undefined;
  /** Whether this node knows a workId. */
  knowsWork(workId: string): boolean;
  /** Shown every row read for a task this node is claiming or running (a claim under way learns from it). */
  observeRunning?(task: TaskInfo): void;
  /** Whether a task may be restored here (the `shouldRestore` option). */
  shouldRestore(task: TaskInfo): boolean;
  /** Carries out an action; returns once it is done. */
  apply(action: Exclude<SyncAction, 'ignore' | 'unknown-work'>, task: TaskInfo): Promise<void>;
  /** Emits a storage event. */
  emit<K extends keyof StorageEvents>(name: K, payload: StorageEvents[K]): void;
}

/** Tuning of a {@link TaskSync}. */
export interface TaskSyncOptions {
  /** How far ahead tasks are held in memory. */
  windowMs: number;
  /** Period of the sync loop; 0 turns the loop off (sync runs on `sync()` and change notices only). */
  intervalMs: number;
  /** Period of the expired-lease reclaim. */
  reclaimIntervalMs: number;
  /** Rows read per page. */
  pageSize: number;
  /** Unstarted claims in a row after which a reclaimed task fails as a poison task. */
  maxUnstartedClaims: number;
  /** Delay that gathers a burst of change notices into one sync. */
  notifyDebounceMs: number;
}

function emptyReport(): SyncReport {
  return { scheduled: 0, rescheduled: 0, dropped: 0, reclaimed: 0, unknown: 0, changes: 0 };
}

/**
 * Keeps a node's timers in line with the repository (DESIGN semantics 4).
 *
 * Rules: the cursor is taken before the restore, so a change that commits during the restore is read again,
 * never lost; passes never overlap (a pass asked for while one runs waits for it and then runs once); the
 * window is reloaded every half window, so every task is loaded at least half a window before it is due.
 */
export class TaskSync {
  readonly #host: SyncHost;
  readonly #options: TaskSyncOptions;
  #cursor: string | null = null;
  #lastReclaimAt = Number.NEGATIVE_INFINITY;
  #lastRefillAt = Number.NEGATIVE_INFINITY;
  #running: Promise<SyncReport> | undefined;
  #again: Promise<SyncReport> | undefined;
  #timer: ClockTimer | undefined;
  #debounce: ClockTimer | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #started = false;
  readonly #reportedUnknown = new Set<string>();

  /**
   * @param host - the storage middleware that owns this sync
   * @param options - window, periods and page size
   */
  constructor(host: SyncHost, options: TaskSyncOptions) {
    this.#host = host;
    this.#options = options;
  }

  /**
   * The initial restore, then the loops: takes the cursor, reclaims expired leases, schedules every
   * Initialized task due within the window, subscribes to change notices when the repository has them, and
   * arms the periodic sync.
   *
   * @param cursor - the change cursor, when the caller read it already (before anything it starts)
   */
  async start(cursor?: string | null): Promise<SyncReport> {
    const { repository, durable } = this.#host;
    this.#started = true;
    this.#cursor = cursor !== undefined ? cursor : await durable.run('getCursor', undefined, () => repository.getCursor());
    const report = await this.sync();
    if (isChangeNotifier(repository) && this.#started) {
      this.#unsubscribe = await repository.subscribeChanges(() => this.notify());
    }
    this.#arm();
    return report;
  }

  /** Stops the loops and the change subscription; a pass under way finishes. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#timer?.clear();
    this.#debounce?.clear();
    this.#timer = undefined;
    this.#debounce = undefined;
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await unsubscribe?.();
    await this.#running?.catch(() => undefined);
  }

  /** A change notice arrived: sync soon, gathering a burst of notices into one pass. */
  notify(): void {
    if (!this.#started || this.#debounce !== undefined) return;
    this.#debounce = this.#host.clock.setTimer(() => {
      this.#debounce = undefined;
      this.sync().catch(() => undefined);
    }, this.#options.notifyDebounceMs);
  }

  /**
   * Runs one pass: reclaims expired leases (at most every `reclaimIntervalMs`), reloads the window (at most
   * every half window), then reads every change since the cursor and applies it.
   *
   * @returns what the pass did
   */
  sync(): Promise<SyncReport> {
    if (this.#running === undefined) {
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    // A pass is under way: it may have read its pages already, so run exactly one more after it.
    this.#again ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#again = undefined;
        return this.sync();
      });
    return this.#again;
  }

  #arm(): void {
    if (!this.#started || this.#options.intervalMs <= 0) return;
    this.#timer = this.#host.clock.setTimer(() => {
      this.#timer = undefined;
      this.sync()
        .catch(() => undefined)
        .finally(() => this.#arm());
    }, this.#options.intervalMs);
  }

  async #pass(): Promise<SyncReport> {
    const { repository, durable, clock } = this.#host;
    const report = emptyReport();
    const now = clock.now();
    if (now - this.#lastReclaimAt >= this.#options.reclaimIntervalMs) {
      this.#lastReclaimAt = now;
      const reclaimed = await durable.run('reclaimExpired', undefined, () => repository.reclaimExpired({ limit: this.#options.pageSize, maxUnstartedClaims: this.#options.maxUnstartedClaims }));
      report.reclaimed += reclaimed.length;
      // Exactly one caller reclaims each expired lease: this node reports those it got, once each.
      for (const task of reclaimed) this.#host.emit('task:reclaimed', { task, nodeId: this.#host.nodeId });
      for (const task of reclaimed) await this.#apply(task, report);
    }
    if (this.#cursor === null) this.#cursor = await durable.run('getCursor', undefined, () => repository.getCursor());
    if (now - this.#lastRefillAt >= this.#options.windowMs / 2) {
      this.#lastRefillAt = now;
      await this.#refill(report);
    }
    for (;;) {
      const cursor: string | null = this.#cursor;
      const page: ChangePage = await durable.run('getUpdatedSince', undefined, () => repository.getUpdatedSince(cursor, this.#options.pageSize));
      report.changes += page.tasks.length;
      for (const task of page.tasks) await this.#apply(task, report);
      this.#cursor = page.cursor;
      if (page.tasks.length === 0 || page.cursor === cursor) break;
    }
    this.#host.emit('sync:done', report);
    return report;
  }

  async #refill(report: SyncReport): Promise<void> {
    const { repository, durable, clock } = this.#host;
    const before = new Date(clock.now() + this.#options.windowMs);
    let after: string | null = null;
    do {
      const from: string | null = after;
      const page: ListPage = await durable.run('listDue', undefined, () => repository.listDue({ before, limit: this.#options.pageSize, after: from }));
      for (const task of page.tasks) await this.#apply(task, report);
      after = page.next;
    } while (after !== null);
  }

  async #apply(task: TaskInfo, report: SyncReport): Promise<void> {
    const host = this.#host;
    const local = host.local(task.id);
    if (local?.phase === 'running') host.observeRunning?.(task);
    const action = decideSync(task, local, {
      nodeId: host.nodeId,
      windowEnd: host.clock.now() + this.#options.windowMs,
      knowsWork: (workId) => host.knowsWork(workId),
    });
    switch (action) {
      case 'ignore':
        return;
      case 'unknown-work':
        // Left untouched for a node that knows it; reported once per task.
        if (!this.#reportedUnknown.has(task.id)) {
          // Bounded: forgetting old reports only means one may be repeated.
          if (this.#reportedUnknown.size >= 10_000) this.#reportedUnknown.clear();
          this.#reportedUnknown.add(task.id);
          report.unknown++;
          host.emit('sync:unknown-work', { task });
        }
        return;
      case 'schedule':
        if (!host.shouldRestore(task)) return;
        report.scheduled++;
        break;
      case 'reschedule':
        report.rescheduled++;
        break;
      case 'drop-ended':
      case 'drop-claimed':
        report.dropped++;
        break;
      default:
        break;
    }
    try {
      await host.apply(action, task);
    } catch (error) {
      // One row that cannot be applied must not stall the cursor for every other row: report it and go on.
      host.emit('sync:error', { task, error });
    }
  }
}
