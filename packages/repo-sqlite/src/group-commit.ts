/**
 * Group commit: state writes issued in the same moment share one `BEGIN IMMEDIATE` transaction, so the
 * write rate is bounded by how often the disk commits, not by one commit per transition.
 */
import type { Clock } from '@horae/core';
import { HoraeError } from '@horae/core';
import { RepositoryError } from '@horae/storage';
import type { Statements } from './statements.js';
import { isStatementError, translateError } from './translate-error.js';

/** What an operation sees inside the shared transaction. */
export interface WriteContext {
  /** The time of the transaction, epoch ms from the repository's clock: one instant for every write in it. */
  readonly now: number;
  /** The next change number; numbers handed out in one transaction commit together, in order. */
  nextSeq(): number;
}

/**
 * One write: runs synchronously inside the transaction. It throws a HoraeError for a refusal of its own
 * (LeaseLostError…) only before it has written or from its one writing statement (which SQLite undoes), or
 * it runs `isolated` in a savepoint.
 */
export type WriteOperation<T> = (tx: WriteContext) => T;

/**
 * Thrown by {@link alsoWrite} when a later statement of a write fails after an earlier one has written: it is
 * neither a HoraeError nor a statement error, so it ends the whole transaction, and no write of the batch
 * lands half-applied.
 */
export class TransactionAbortError extends Error {
  /**
   * @param action - what the failing statement did
   * @param cause - what the driver threw
   */
  constructor(action: string, cause: unknown) {
    super(`${action}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'TransactionAbortError';
  }
}

/**
 * Runs a statement that belongs to a write whose first statement has already written (the attempt record of a
 * transition), so that the write stays all or nothing without the cost of a savepoint on every transition.
 *
 * Rule: if `run` throws, the whole transaction rolls back and every write of its batch is rejected.
 *
 * @param action - what the statement does, for the message
 * @param run - the statement
 * @returns what `run` returns
 * @throws TransactionAbortError when `run` throws
 */
export function alsoWrite<T>(action: string, run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw new TransactionAbortError(action, error);
  }
}

interface Pending {
  run: WriteOperation<unknown>;
  isolated: boolean;
  action: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Options of a {@link WriteQueue}. */
export interface WriteQueueOptions {
  /** Batch writes issued in the same tick into one transaction. */
  groupCommit: boolean;
  /** Flush at once when this many writes are queued. */
  maxBatchSize: number;
  /** Called after each transaction that committed; must not throw. */
  onCommit?: () => void;
  /** Called after each transaction that failed as a whole and was rolled back; must not throw. */
  onRollback?: () => void;
  /** Called before each transaction begins: what it throws rejects every write of the batch, and nothing is written. */
  beforeBegin?: () => void;
  /**
   * Called right after each COMMIT, before any write of the batch resolves: what it throws rejects every write of
   * the batch (committed, but where the caller must not count on it: a database file deleted or replaced meanwhile).
   */
  afterCommit?: () => void;
}

/**
 * Queues writes and runs them in transactions: with group commit, everything queued before the next
 * macrotask (or up to `maxBatchSize`) in one transaction; without, each write in its own.
 *
 * Rules: each caller gets its own result or its own error, and one write's refusal never fails another's;
 * a transaction that fails as a whole (the lock not obtained within the busy timeout, a disk error) rejects
 * every write in it with a RepositoryError, and none of them is applied. A transaction never spans an
 * `await`, so connections of one process never wait for each other.
 */
export class WriteQueue {
  readonly #statements: Statements;
  readonly #clock: Clock;
  readonly #options: WriteQueueOptions;
  #queue: Pending[] = [];
  #timer: NodeJS.Immediate | null = null;

  /**
   * @param statements - the prepared statements of the repository
   * @param clock - the source of `now` for every transaction
   * @param options - batching
   */
  constructor(statements: Statements, clock: Clock, options: WriteQueueOptions) {
    this.#statements = statements;
    this.#clock = clock;
    this.#options = options;
  }

  /**
   * Queues `run` and resolves with what it returns once its transaction has committed.
   *
   * @param action - what the write does, for error messages
   * @param run - the write
   * @param isolated - run it in a savepoint: for writes of several statements that must land all or none
   */
  submit<T>(action: string, run: WriteOperation<T>, isolated = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ run, isolated, action, resolve, reject });
      if (!this.#options.groupCommit || this.#queue.length >= this.#options.maxBatchSize) this.flush();
      else this.#timer ??= setImmediate(() => this.flush());
    });
  }

  /** Runs every queued write now, in one transaction. */
  flush(): void {
    if (this.#timer !== null) {
      clearImmediate(this.#timer);
      this.#timer = null;
    }
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    let outcomes: Outcome[];
    try {
      outcomes = this.#runTransaction(batch);
    } catch (error) {
      const failure = translateError(error, batch.length === 1 ? batch[0]!.action : `a batch of ${batch.length} writes`);
      this.#options.onRollback?.();
      for (const op of batch) op.reject(failure);
      return;
    }
    this.#options.onCommit?.();
    batch.forEach((op, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) op.resolve(outcome.value);
      else op.reject(outcome.error);
    });
  }

  /** Rejects every queued write: the repository is closing without a database to write to. */
  rejectAll(reason: string): void {
    if (this.#timer !== null) clearImmediate(this.#timer);
    this.#timer = null;
    const batch = this.#queue;
    this.#queue = [];
    for (const op of batch) op.reject(new RepositoryError(reason));
  }

  #runTransaction(batch: readonly Pending[]): Outcome[] {
    const s = this.#statements;
    this.#options.beforeBegin?.();
    s.begin.run();
    try {
      const first = (s.readChangeSeq.get() as { value: number }).value;
      let seq = first;
      const tx: WriteContext = { now: this.#clock.now(), nextSeq: () => ++seq };
      const outcomes = batch.map((op) => this.#runOne(op, tx));
      if (seq !== first) s.writeChangeSeq.run({ seq });
      s.commit.run();
      this.#options.afterCommit?.();
      return outcomes;
    } catch (error) {
      rollbackQuietly(s);
      throw error;
    }
  }

  #runOne(op: Pending, tx: WriteContext): Outcome {
    const s = this.#statements;
    if (op.isolated) s.savepoint.run();
    try {
      const value = op.run(tx);
      if (op.isolated) s.releaseSavepoint.run();
      return { ok: true, value };
    } catch (error) {
      // A refusal of this write alone: undo what it wrote and go on with the others. Anything else
      // (a disk error, a lost lock) ends the whole transaction.
      if (!(error instanceof HoraeError) && !isStatementError(error)) throw error;
      if (op.isolated) {
        s.rollbackToSavepoint.run();
        s.releaseSavepoint.run();
      }
      return { ok: false, error: translateError(error, op.action) };
    }
  }
}

function rollbackQuietly(s: Statements): void {
  try {
    s.rollback.run();
  } catch {
    // SQLite already rolled back (some errors end the transaction themselves): nothing left to undo.
  }
}
