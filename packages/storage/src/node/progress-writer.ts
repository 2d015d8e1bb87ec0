import type { Clock, ClockTimer, ProgressReport } from '@horae/core';
import type { Repository } from '../contract/repository.js';

/**
 * Persists a run's progress and check-ins, at most once per `throttleMs`: the ones in between are merged (a
 * check-in is the last message of its window), and the last report lands before the write that ends the run,
 * through {@link ProgressWriter.flush}.
 *
 * Rule: writes land in the order they were made (one at a time), so an older report never overwrites a newer one.
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
  /** A report was made since the last write. */
  #dirty = false;
  /** The chain of writes under way: each waits for the one before. */
  #writing: Promise<void> = Promise.resolve();

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
    this.#dirty = true;
    this.#schedule();
  }

  /** Records a check-in message; before any progress report it is written with progress 0 of 0. */
  checkIn(message: string): void {
    this.#latest = { ...this.#latest, message };
    this.#dirty = true;
    this.#schedule();
  }

  /**
   * Writes what is not written yet, at once, then stops: called when the run ended and before the write that
   * ends it, so that a Done task shows its last progress and its last check-in is in its history.
   *
   * @returns when every write made so far settled (a failed one is dropped)
   */
  async flush(): Promise<void> {
    this.#timer?.clear();
    this.#timer = undefined;
    if (!this.#stopped && this.#dirty) this.#write();
    this.#stopped = true;
    await this.#writing;
  }

  /** Drops what is not written yet; the run ended (its lease was lost, so a write would be refused). */
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
    this.#dirty = false;
    const report = { ...this.#latest };
    this.#writing = this.#writing.then(() => this.#repository.setProgress(this.#taskId, this.#token, report)).catch(() => undefined);
  }
}
