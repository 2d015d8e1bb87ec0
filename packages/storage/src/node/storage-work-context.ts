import type { Clock, ProgressReport, SchedulerContext, ValueKey, WorkContext } from '@horae/core';
import { ProgressWriter } from './progress-writer.js';
import type { Repository } from '../contract/repository.js';
import type { TaskInfo } from '../contract/task-info.js';
import type { RunAbort } from './run-abort.js';

/**
 * The context storage hands a work: the claimed row's attempt, fencing token and param, the run's signal
 * ({@link RunAbort}), and progress and check-ins, recorded in the repository (throttled) as well as by the core.
 *
 * Why a class: the object literal it replaces built three accessors and four closures a run, for a no-op work that
 * reads none of them. `value`, `progress` and `checkIn` are still functions bound to the run (a work may take them
 * out of its context, as it could before), built on the first read; the signal, the due time and the scheduling
 * context are read through on demand (up front they cost an AbortController, a Date and a rebuilt SchedulerContext).
 */
export class StorageWorkContext implements WorkContext {
  /** The task's id. */
  readonly taskId: string;
  /** The attempt this run is, as the claim counted it (1 for the first run). */
  readonly attempt: number;
  /** The claim's fencing number (the row's count of claims): higher for each later claim of the task. */
  readonly fencingToken: number;
  /** The param as the claim read it from the repository. */
  readonly param: unknown;
  /** The core's clock of the run. */
  // Set even when undefined (readers fall back to the real clock either way).
  readonly clock: Clock | undefined;
  /** Called on each sign of life (a report whose `completed` moved, a check-in) when the work has a stall timeout. */
  onAlive: (() => void) | undefined = undefined;
  /** Records the run's progress and check-ins: built on the first report only (most works never report). */
  writer: ProgressWriter | undefined = undefined;
  readonly #outer: WorkContext;
  readonly #abort: RunAbort;
  readonly #token: string;
  readonly #repository: Repository;
  readonly #storageClock: Clock;
  readonly #throttleMs: number;
  #lastCompleted: number | undefined = undefined;
  #value: (<T>(key: ValueKey<T>) => T | undefined) | undefined = undefined;
  #progress: ((report: ProgressReport) => void) | undefined = undefined;
  #checkIn: ((message: string) => void) | undefined = undefined;

  /**
   * @param outer - the context the run received from the core
   * @param abort - the run's abort
   * @param claimed - the claimed (started) row
   * @param id - the task's id
   * @param token - the lease token the progress writes carry
   * @param repository - where progress is recorded
   * @param storageClock - storage's clock, which times the progress writes' throttle
   * @param throttleMs - the least time between two progress writes
   */
  constructor(outer: WorkContext, abort: RunAbort, claimed: TaskInfo, id: string, token: string, repository: Repository, storageClock: Clock, throttleMs: number) {
    this.#outer = outer;
    this.#abort = abort;
    this.taskId = id;
    this.attempt = claimed.attempt;
    this.fencingToken = claimed.claims;
    this.param = claimed.param;
    this.clock = outer.clock;
    this.#token = token;
    this.#repository = repository;
    this.#storageClock = storageClock;
    this.#throttleMs = throttleMs;
  }

  /** The run's signal ({@link RunAbort}), built on the first read. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The due time, read from the core's context on demand. */
  get scheduledAt(): Date {
    return this.#outer.scheduledAt;
  }

  /** The scheduling context, read from the core's context on demand. */
  get context(): SchedulerContext {
    return this.#outer.context;
  }

  /** Reads a value of the scheduling context (a function bound to the run, built on the first read). */
  get value(): <T>(key: ValueKey<T>) => T | undefined {
    return (this.#value ??= <T>(key: ValueKey<T>): T | undefined => this.#outer.value(key));
  }

  /** Reports progress to the core and records it, throttled (a function bound to the run, built on the first read). */
  get progress(): (report: ProgressReport) => void {
    return (this.#progress ??= (report: ProgressReport): void => {
      // The run's own context validates the report (and throws on a bad one) before anything records it.
      this.#outer.progress(report);
      this.#writer().progress(report);
      if (this.onAlive !== undefined && report.completed !== this.#lastCompleted) {
        this.#lastCompleted = report.completed;
        this.onAlive();
      }
    });
  }

  /** Checks in with the core and records it, throttled (a function bound to the run, built on the first read). */
  get checkIn(): (message: string) => void {
    return (this.#checkIn ??= (message: string): void => {
      this.#outer.checkIn(message);
      this.#writer().checkIn(message);
      this.onAlive?.();
    });
  }

  #writer(): ProgressWriter {
    return (this.writer ??= new ProgressWriter(this.#repository, this.#storageClock, this.taskId, this.#token, this.#throttleMs));
  }
}
