import type { Clock, ClockTimer, ProgressReport } from '@horae/core';
import type { Repository } from './repository.js';

/**
 * Persists a run's progress and check-ins, at most once per `throttleMs`: the last report always lands
 * (unless the run ends first), the ones in between are merged.
 *
 * @remarks Progress is advisory: a write that fails is dropped, never retried, so an outage cannot block a run.
 * @internal
 */
export class ProgressWriter {
  readonly #repository: Repository;
  readonly #clock: Clock;
  readonly #taskId: string;
  readonly #token: string;
  readonly #throttleMs: number;
  #latest: { completed: number; total: number; message?: string } = { completed: 0, total: 0 };
  #timer: ClockTimer | undefined;
  #lastWriteAt = Number.NEGATIVE_INFINITY;
  #stopped = false;

  /**
   * @param repository - where progress is written
   * @param clock - the throttle's clock
   * @param taskId - the running task
   * @param token - its lease token
   * @param throttleMs - the shortest gap between two writes
   */
  constructor(repository: Repository, clock: Clock, taskId: string, token: string, throttleMs: number) {
    this.#repository = repository;
    this.#clock = clock;
    this.#taskId = taskId;
    this.#token = token;
    this.#throttleMs = throttleMs;
  }

  /** Records a progress report. */
  progress(report: ProgressReport): void {
    this.#latest = { ...this.#latest, completed: report.completed, total: report.total };
    this.#schedule();
  }

  /** Records a check-in message. */
  checkIn(message: string): void {
    this.#latest = { ...this.#latest, message };
    this.#schedule();
  }

  /** Drops what is not written yet; the run ended. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.clear();
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    const wait = this.#lastWriteAt + this.#throttleMs - this.#clock.now();
    if (wait <= 0) this.#write();
    else this.#timer = this.#clock.setTimer(() => this.#write(), wait);
  }

  #write(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.#lastWriteAt = this.#clock.now();
    this.#repository.setProgress(this.#taskId, this.#token, { ...this.#latest }).catch(() => undefined);
  }
}
