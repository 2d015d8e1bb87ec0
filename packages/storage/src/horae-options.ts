/**
 * The options and types of `createHorae()`: what the facade takes (storage options plus what it wires around
 * them), the forms of `schedule()`, `stop()`'s deadlines, and the defaults.
 */
import type { CatchUpPolicy, Clock, Middleware, OverlapPolicy, ScheduleOptions, SchedulerOptions } from '@horae/core';
import type { Repository } from './contract/repository.js';
import type { DurableStatusHookOptions } from './hooks/durable-status-hooks.js';
import type { StatusHookTarget } from './hooks/status-hook-bridge.js';
import type { StatusChange, StatusHookOptions } from './hooks/status-hooks.js';
import type { StorageOptions } from './node/storage-middleware.js';
import type { ScheduleLoopRecovery } from './schedules/schedule-loop.js';
import type { ScheduleTickResult } from './schedules/schedule-materializer.js';
import type { WorkRegistry } from './works/work-registry.js';

/** Whether this process is the only one on its repository, or one node of many. */
export type HoraeMode = 'single-node' | 'multi-node';

/**
 * A status hook given to {@link createHorae}: where to POST, or your own `{ onTransition }`. With a repository that
 * has a hook outbox the POSTs are durable (options of `DurableStatusHooks`); otherwise they are held in memory
 * (options of `statusHooks`).
 */
export type HoraeStatusHook = (StatusHookOptions & DurableStatusHookOptions) | StatusHookTarget;

/** The leaseMs a multi-node Horae uses when none is given. */
export const DEFAULT_HORAE_LEASE_MS = 30_000;
/** The schedule tick period when neither `scheduleTickMs` nor `syncIntervalMs` is given. */
export const DEFAULT_HORAE_SCHEDULE_TICK_MS = 5_000;
/** How long `stop()` lets status hooks deliver what they hold, when not told. */
export const DEFAULT_HORAE_HOOK_GRACE_MS = 5_000;

/** Options of {@link createHorae}: the storage options, plus what the facade wires around them. */
export interface HoraeOptions extends StorageOptions {
  /** Where tasks (and, when it implements ScheduleStore, recurring schedules) live. */
  repository: Repository;
  /**
   * Close the repository at the end of `stop()` (after everything else stopped). For a repository this Horae owns,
   * such as the embedded default the `horae` package opens; leave it off for one you close yourself.
   *
   * @defaultValue false
   */
  closeRepositoryOnStop?: boolean;
  /** The works this process runs, by workId. */
  registry: WorkRegistry;
  /**
   * `'multi-node'` uses `multiNodeStorage` (each task runs once across the processes sharing the repository);
   * `'single-node'` uses `singleNodeStorage`.
   *
   * @defaultValue `'multi-node'` when `nodeId` is given, else `'single-node'`
   */
  mode?: HoraeMode;
  /**
   * This node's id, written as the owner of its leases; unique among the nodes sharing the repository.
   *
   * @defaultValue a random uuid (giving one selects `'multi-node'` unless `mode` says otherwise)
   */
  nodeId?: string;
  /**
   * How long a claim holds a task before another node may reclaim it (renewed every third of it while the
   * work runs).
   *
   * @defaultValue 30000
   */
  leaseMs?: number;
  /** How many runs may be in progress at once on this node. @defaultValue 10 */
  concurrency?: number;
  /**
   * Limits per work on this node: at most `workConcurrency[workId]` runs of that work at once, within
   * `concurrency` (change them later with `horae.scheduler.setWorkConcurrency`).
   *
   * @defaultValue no per-work limit
   */
  workConcurrency?: Readonly<Record<string, number>>;
  /**
   * The stall timeout of every task: a run that shows no sign of life (a `ctx.progress()` whose `completed`
   * moved, or a `ctx.checkIn()`) within this many ms has its signal aborted with a `StalledError` and fails with
   * it; storage's retry policy then applies (the stall middleware is installed before storage, so storage records
   * the StalledError). A `stallTimeoutMs` given to `schedule()` overrides it for that call's local run only: it is
   * not persisted, so after a restart or on another node this default applies.
   *
   * @defaultValue none: runs are not watched (unless a `schedule()` call gives `stallTimeoutMs`)
   */
  stallTimeoutMs?: number;
  /** The clock of the scheduler, the storage loops and the schedule loop. @defaultValue `realClock` */
  clock?: Clock;
  /**
   * Your middlewares, installed in this order after `registry.middleware()` and BEFORE storage. A middleware
   * before storage wraps the raw work: at run time its wrapper runs inside storage's, after the claim, and
   * storage records what it made of the run (a `timeout` failure is recorded and retried by storage's policy; a
   * `retry` deferral is released durably, each run counting as an attempt). See "Middleware order" in
   * docs/concepts.md.
   *
   * @defaultValue none
   */
  middlewares?: readonly Middleware[];
  /**
   * Status hooks: each state change this node makes is POSTed (signed) to each hook's URL, or handed to each
   * `{ onTransition }` you give.
   *
   * @defaultValue none
   */
  statusHooks?: HoraeStatusHook | readonly HoraeStatusHook[];
  /**
   * The period of the loop that materializes due occurrences of recurring schedules; 0 turns the loop off.
   * Ignored when the repository does not persist schedules.
   *
   * @defaultValue `syncIntervalMs` when it is ≥ 1, else 5000
   */
  scheduleTickMs?: number;
  /**
   * How far ahead occurrences of `overlap: 'allow'` schedules are materialized (see `ScheduleMaterializer`).
   *
   * @defaultValue 60000
   */
  scheduleLookaheadMs?: number;
  /**
   * How late a tick may find an occurrence and still run it as on time; keep it above `scheduleTickMs`.
   *
   * @defaultValue 60000
   */
  scheduleGraceMs?: number;
  /**
   * Further options of the core Scheduler (aging, wall-clock check, stop timings, and those the core adds).
   *
   * @defaultValue the Scheduler's defaults
   */
  schedulerOptions?: Omit<SchedulerOptions, 'clock' | 'concurrency'>;
}

/** The events of the facade itself (the storage events are `horae.events`, the core's `horae.scheduler.events`). */
export type HoraeEvents = {
  /** The schedule loop finished a tick. */
  'schedules:ticked': ScheduleTickResult;
  /**
   * A tick, one schedule of it, or the sync after it failed; the loop goes on. A repository outage is reported once,
   * by its first failure, not at every tick while it lasts; `schedules:recovered` reports its end.
   */
  'schedules:error': { error: unknown; scheduleName: string | undefined };
  /** The schedule loop ticks without an outage again, after ticks that failed with one; once per outage. */
  'schedules:recovered': ScheduleLoopRecovery;
  /** A status hook's `onTransition` threw; the task and the other hooks were not affected. */
  'hook:error': { error: unknown; change: StatusChange };
};

/** Fields shared by every kind of {@link Horae.schedule} call. */
export interface HoraeScheduleBase {
  /** The registered work to run. */
  workId: string;
  /** Its param (JSON, validated by the work's validator). */
  param?: unknown;
  /** Priority when slots are scarce; higher first. @defaultValue 0 */
  priority?: number;
  /** Runs the task may have in all. @defaultValue the work's, else the storage option */
  maxAttempts?: number;
}

/** A one-time task: run now (neither `runAt` nor `delayMs`), at `runAt`, or after `delayMs`. */
export interface OneTimeScheduleOptions extends Omit<ScheduleOptions, 'workId'> {
  /** The registered work to run. */
  workId: string;
  /** Not for a one-time task. */
  every?: undefined;
  /** Not for a one-time task. */
  cron?: undefined;
}

/** Options of a recurring schedule shared by `every` and `cron`. */
export interface RecurringScheduleBase extends HoraeScheduleBase {
  /** The schedule's unique name: scheduling the same name again updates it (idempotent when unchanged). */
  name: string;
  /** What to do with occurrences missed while no node ran. @defaultValue `'once'` */
  catchUp?: CatchUpPolicy;
  /** The most occurrences one catch-up runs. @defaultValue 100 */
  maxCatchUp?: number;
  /** Whether an occurrence starts while the previous one still runs. @defaultValue `'skip'` */
  overlap?: OverlapPolicy;
  /** Not for a recurring schedule. */
  runAt?: undefined;
  /** Not for a recurring schedule. */
  delayMs?: undefined;
}

/** A schedule that runs every `every` ms (at `anchor + k * every`). */
export interface EveryScheduleOptions extends RecurringScheduleBase {
  /** The period in ms: an integer ≥ 1. */
  every: number;
  /** The first occurrence. @defaultValue the Unix epoch */
  anchor?: Date;
  /** Not with `every`. */
  cron?: undefined;
}

/** A schedule that runs on a cron expression. */
export interface CronScheduleOptions extends RecurringScheduleBase {
  /** A cron expression (croner syntax). */
  cron: string;
  /** Its IANA timezone. @defaultValue `'UTC'` */
  timezone?: string;
  /** Not with `cron`. */
  every?: undefined;
}

/** A recurring schedule: `every` or `cron`, with a `name`. */
export type RecurringScheduleOptions = EveryScheduleOptions | CronScheduleOptions;

/** Options of {@link Horae.stop}. */
export interface HoraeStopOptions {
  /** How long running work may go on before its signal aborts (the run goes back to Initialized). @defaultValue the scheduler's `stopTimeoutMs` (10000) */
  timeoutMs?: number;
  /** How long status hooks may go on delivering what they hold, on their clock. @defaultValue 5000 */
  hookGraceMs?: number;
}

