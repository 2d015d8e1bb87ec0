import type { ProgressReport, TaskHandle, TaskRunState } from '@horae/core';

/**
 * The handle a storage middleware returns: it stays the same while the task moves between local timers
 * (a runAt changed elsewhere, a retry, a run that another node took over), and settles once, when the task
 * ends for good.
 * @internal
 */
export class StorageTaskHandle implements TaskHandle {
  /** The task's id. */
  readonly taskId: string;
  /** Settles once, when the task ends for good. */
  readonly result: Promise<unknown>;
  /** The local handle of the current timer, when this node holds one. */
  inner: TaskHandle | undefined;
  /** The due time this node last knew of. */
  knownRunAt: Date;
  /** The priority this node last knew of. */
  knownPriority: number;
  /** True while the run is over but its end is still being written: the task is still `running`. */
  finishing = false;
  readonly #cancel: (reason?: string) => Promise<boolean>;
  #resolve!: (value: unknown) => void;
  #reject!: (error: unknown) => void;
  #final: TaskRunState | undefined;

  /**
   * @param taskId - the task
   * @param runAt - its due time
   * @param priority - its priority
   * @param cancel - what `cancel()` does (the storage's durable cancel)
   */
  constructor(taskId: string, runAt: Date, priority: number, cancel: (reason?: string) => Promise<boolean>) {
    this.taskId = taskId;
    this.knownRunAt = runAt;
    this.knownPriority = priority;
    this.#cancel = cancel;
    this.result = new Promise<unknown>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A rejection nobody awaits is not reported as unhandled (TaskHandle contract).
    this.result.catch(() => undefined);
  }

  /** When the task is due next, as this node knows it. */
  get runAt(): Date {
    return this.inner?.runAt ?? this.knownRunAt;
  }

  /** Its priority, as this node knows it. */
  get priority(): number {
    return this.inner?.priority ?? this.knownPriority;
  }

  /** `scheduled` or `running` while pending (also while another node runs it), then its end. */
  get state(): TaskRunState {
    if (this.#final !== undefined) return this.#final;
    if (this.finishing) return 'running';
    const inner = this.inner?.state;
    // While the local timer is being replaced, or the task runs on another node, the task is still pending.
    if (inner === undefined) return 'scheduled';
    return inner === 'running' ? 'running' : 'scheduled';
  }

  /** The last progress of the local run, if any. */
  get progress(): ProgressReport | undefined {
    return this.inner?.progress;
  }

  /** True once the task ended and the result settled. */
  get settled(): boolean {
    return this.#final !== undefined;
  }

  /** Cancels the task durably (from any node); true when this call cancelled it. */
  cancel(reason?: string): Promise<boolean> {
    return this.#cancel(reason);
  }

  /** Settles the handle; later calls do nothing. */
  settle(state: 'done' | 'failed' | 'cancelled', value: unknown): void {
    if (this.#final !== undefined) return;
    this.#final = state;
    if (state === 'done') this.#resolve(value);
    else this.#reject(value);
  }
}
