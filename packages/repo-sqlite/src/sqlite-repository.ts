import { randomUUID } from 'node:crypto';
import { InvalidInputError, quoteInput, realClock, type Clock } from '@horae/core';
import {
  ALL_TASK_STATES,
  InvalidStateError,
  LeaseLostError,
  leaseExpiredBeforeStart,
  MAX_CHECK_INS_PER_ATTEMPT,
  RepositoryError,
  SchemaVersionError,
  TaskNotDueError,
  TaskNotFoundError,
  isTerminal,
  poisonTaskError,
  normalizeNewTask,
  normalizeScheduleDefinition,
  validateScheduleAdvance,
  validateScheduleName,
  validateLeaseMs,
  validateLimit,
  validatePatch,
  validateOwner,
  checkMaxParamBytes,
  fullWorks,
  pickWithinLimits,
  validateMaxWorking,
  checkAgingMs,
  checkMaxUnstartedClaims,
  validateWorkLimits,
  type ChangePage,
  type WriteLimits,
  type LimitedClaim,
  type LimitedClaimDueOptions,
  type LimitedClaimOptions,
  type WorkLimiter,
  type HookOutbox,
  type HookOutboxProvider,
  type TaskSearch,
  type TaskSearchProvider,
  type AttemptOutcome,
  type ClaimDueOptions,
  type ClaimOptions,
  type InsertResult,
  type ListOptions,
  type ListPage,
  type NewTask,
  type NormalizedNewTask,
  type ListSchedulesOptions,
  type ReclaimOptions,
  type ReleaseOptions,
  type Repository,
  type Schedule,
  type ScheduleAdvance,
  type ScheduleDefinition,
  type ScheduleStore,
  type UpsertScheduleResult,
  type TaskAttempt,
  type TaskError,
  type TaskInfo,
  type TaskPatch,
  type TaskProgress,
  type TaskState,
} from '@horae/storage';
import { openDatabase, type SqliteDatabase } from './driver.js';
import { assertNonEmptyString, assertProgress, assertValidDate, normalizeTaskError } from './input.js';
import { decodeChangeCursor, decodePageCursor, encodePageCursor } from './page-cursor.js';
import { progressToText, rowToTask, tupleToRow, type TaskRow } from './row-mapping.js';
import { rowToAttempt, type AttemptRow } from './attempt-mapping.js';
import { migrate, readSchemaVersion, SCHEMA_VERSION } from './schema.js';
import { INDEXED_AGING_MS, preparePositional, prepareStatements, type PositionalStatements, type Statements } from './statements.js';
import { mergeLevels } from './claim-order.js';
import { idTakenError, isConstraintError, isIdTakenError, translateError } from './translate-error.js';
import { WriteQueue, alsoWrite, type WriteContext } from './group-commit.js';
import { SqliteHookOutbox } from './hook-outbox.js';
import { SqliteTaskSearch } from './task-search.js';
import { SqliteScheduleTable } from './schedule-table.js';
import { Checkpointer } from './checkpointer.js';
import { KnownRows } from './known-rows.js';
import { watchDatabaseFile, type DatabaseFileGuard } from './file-identity.js';

/**
 * SQLite's `PRAGMA synchronous` levels, with WAL journaling (what the adapter sets on a file):
 *
 * - `'OFF'`: never syncs. A process crash loses nothing committed; a power cut or OS crash may lose recent
 *   commits and may corrupt the database file.
 * - `'NORMAL'`: syncs the WAL only at checkpoints. A process crash loses nothing committed; a power cut or
 *   OS crash may roll back the last commits, but the file stays consistent (never corrupt).
 * - `'FULL'`: syncs the WAL at every commit. Committed transactions survive a power cut too (on storage
 *   that honours fsync).
 * - `'EXTRA'`: FULL, plus syncing the directory after a rollback journal is unlinked (which matters in
 *   DELETE journal mode, not in WAL): the same guarantees as FULL here, a little slower.
 */
export type SqliteSynchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

const SYNCHRONOUS_LEVELS: readonly SqliteSynchronous[] = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];

/** What {@link SqliteRepository} takes. */
export interface SqliteRepositoryOptions {
  /**
   * A database file path (created if missing), `':memory:'` for a private in-memory database, or a
   * better-sqlite3 `Database` the caller opened. The adapter closes only what it opened itself.
   */
  database: string | SqliteDatabase;
  /**
   * How long a write waits for another connection's lock before failing with a RepositoryError
   * (`PRAGMA busy_timeout`).
   * @defaultValue 5000
   */
  busyTimeoutMs?: number;
  /**
   * How hard SQLite syncs to disk (`PRAGMA synchronous`): see {@link SqliteSynchronous} for what each level
   * keeps after a process crash and after a power cut.
   * @defaultValue 'NORMAL'
   */
  synchronous?: SqliteSynchronous;
  /**
   * The clock of createdAt, updatedAt, lease expiry and due checks. Every process sharing a file runs on one
   * machine, so they share this clock.
   * @defaultValue realClock
   */
  clock?: Clock;
  /**
   * Batch the writes issued in the same tick into one transaction (group commit). Each write still gets its
   * own result or error.
   * @defaultValue true
   */
  groupCommit?: boolean;
  /**
   * With group commit, flush as soon as this many writes are queued.
   * @defaultValue 512
   */
  maxBatchSize?: number;
  /**
   * Who copies the WAL back into a database file the adapter opened itself (a path, not `':memory:'`):
   *
   * - `'background'`: a worker thread with its own connection, every 100 ms (started once the repository has
   *   committed 100 transactions, so short-lived repositories spawn no thread). The copy and its fsync then never
   *   block the event loop; the guarantees of {@link SqliteSynchronous} are unchanged (the checkpoints sync as the
   *   repository's level says). If the worker cannot start or stops, SQLite's automatic checkpoint takes over again.
   * - `'inline'`: SQLite's automatic checkpoint, inside the COMMIT that crosses 1,000 WAL pages.
   *
   * A `Database` given by the caller keeps its own settings: always inline.
   * @defaultValue 'background'
   */
  checkpoint?: 'background' | 'inline';
  /**
   * The most bytes of UTF-8 JSON a task's or a schedule's param may take; a larger one is refused with
   * InvalidInputError before anything is written (and before it is serialized).
   * @defaultValue `DEFAULT_MAX_PARAM_BYTES` of `@horae/storage` (1 MiB)
   */
  maxParamBytes?: number;
}

/** Committed transactions after which a repository starts its background checkpointer. */
const BACKGROUND_CHECKPOINT_AFTER_COMMITS = 100;
/** How often the background checkpointer runs, in ms. */
const BACKGROUND_CHECKPOINT_INTERVAL_MS = 100;

/**
 * How many claimed rows a repository remembers for the markAsDone that follows (see KnownRows), and how many
 * characters of their text: far more than the tasks a process runs at once, and a few MB at most.
 */
const KNOWN_ROWS = 10_000;
const KNOWN_ROWS_WEIGHT = 4_000_000;

/** What the TaskInfo of a lease-expired task records as `lastError`, and its attempt as `error`. */
const LEASE_EXPIRED_ERROR: TaskError = { message: 'lease expired', code: 'LEASE_EXPIRED' };

/** How an attempt ends. */
type EndOutcome = Exclude<AttemptOutcome, 'running'>;

/** The state an InvalidStateError names when a run's end is refused because the run never started. */
const UNSTARTED = 'Working, claimed ahead with its run not started';

/** Which due rows a claim of due tasks reads: how many, in which order, of which works. */
interface DueQuery {
  limit: number;
  agingMs: number;
  /** Only these works; null for every work. */
  workIds: readonly string[] | null;
  /** Leaving out these works (their limit is reached). */
  exclude: readonly string[];
}

/**
 * A Horae {@link Repository} on one SQLite database file, through better-sqlite3, with the optional
 * {@link ScheduleStore} capability (recurring schedules as rows).
 *
 * Every read-modify-write runs in a `BEGIN IMMEDIATE` transaction, so the rules of the contract hold across
 * connections and across processes sharing the file on one machine; writes issued in one tick share one
 * transaction (group commit). Each run's attempt record (`horae_task_attempts`) is written by the statements
 * of the transition it records, in its transaction: the history never disagrees with the task's state.
 *
 * A database file (or its `-wal` log) deleted or replaced while open is found after the next commit, or by the
 * background checkpointer: from then on every call fails with DatabaseFileReplacedError (see file-identity.ts).
 */
export class SqliteRepository implements Repository, ScheduleStore, WorkLimiter, HookOutboxProvider, TaskSearchProvider {
  /** The most bytes of UTF-8 JSON a param may take (the `maxParamBytes` option). */
  readonly maxParamBytes: number;
  readonly #limits: WriteLimits;
  readonly #db: SqliteDatabase;
  readonly #ownsDatabase: boolean;
  readonly #clock: Clock;
  readonly #statements: Statements;
  /** The hot statements of a run, bound in the order of POSITIONAL_ORDER (see there why). */
  readonly #hot: PositionalStatements;
  readonly #writes: WriteQueue;
  readonly #schedules: SqliteScheduleTable;
  #hookOutbox: SqliteHookOutbox | undefined;
  #taskSearch: SqliteTaskSearch | undefined;
  /** The rows this repository claimed (or renewed) last, so that their markAsDone need not read them. */
  readonly #known = new KnownRows(KNOWN_ROWS, KNOWN_ROWS_WEIGHT);
  /**
   * The rows written by the transaction under way, remembered once it commits: a transaction that fails as a whole
   * hands its change numbers out again, so a row it wrote must never be remembered.
   */
  #written: TaskRow[] = [];
  #closed = false;
  /** Starts the background checkpointer; null when there is none to start (inline checkpoints, or started). */
  #startCheckpointer: (() => void) | null = null;
  #checkpointer: Checkpointer | null = null;
  #commits = 0;
  /** Stops the repository with a DatabaseFileReplacedError once its file is deleted or replaced; null for `:memory:`. */
  readonly #fileGuard: DatabaseFileGuard | null;

  /**
   * Opens (or adopts) the database, sets WAL journaling, the busy timeout and the sync level, and brings the
   * schema up to date.
   *
   * Rules: a file from an older version of the adapter is upgraded in one transaction; a file whose schema is
   * newer than this version knows is refused and left untouched (not even switched to WAL).
   *
   * ### Examples
   * ```ts
   * import { SqliteRepository } from '@horae/repo-sqlite';
   * const repository = new SqliteRepository({ database: './horae.db', synchronous: 'FULL' });
   * ```
   *
   * @param options - the database and its settings, or just the path of the file
   * @throws SchemaVersionError when the file holds a newer schema
   * @throws InvalidInputError on a bad option
   * @throws RepositoryError when the file cannot be opened or migrated
   */
  constructor(options: SqliteRepositoryOptions | string) {
    const opts: SqliteRepositoryOptions = typeof options === 'string' ? { database: options } : options;
    const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) throw new InvalidInputError(`busyTimeoutMs must be an integer ≥ 0, got ${quoteInput(busyTimeoutMs)}`);
    const synchronous = opts.synchronous ?? 'NORMAL';
    if (!SYNCHRONOUS_LEVELS.includes(synchronous)) throw new InvalidInputError(`synchronous must be one of ${SYNCHRONOUS_LEVELS.join(', ')}, got ${quoteInput(synchronous)}`);
    const checkpoint = opts.checkpoint ?? 'background';
    if (checkpoint !== 'background' && checkpoint !== 'inline') throw new InvalidInputError(`checkpoint must be 'background' or 'inline', got ${quoteInput(checkpoint)}`);
    const maxBatchSize = opts.maxBatchSize ?? 512;
    if (!Number.isSafeInteger(maxBatchSize) || maxBatchSize < 1) throw new InvalidInputError(`maxBatchSize must be an integer ≥ 1, got ${quoteInput(maxBatchSize)}`);
    if (typeof opts.database !== 'string' && (opts.database === null || typeof opts.database !== 'object')) {
      throw new InvalidInputError('database must be a file path, ":memory:", or an opened better-sqlite3 Database');
    }
    this.maxParamBytes = checkMaxParamBytes(opts.maxParamBytes);
    this.#limits = { maxParamBytes: this.maxParamBytes };
    this.#clock = opts.clock ?? realClock;
    const given = opts.database;
    this.#ownsDatabase = typeof given === 'string';
    try {
      this.#db = typeof given === 'string' ? openDatabase(given) : given;
    } catch (error) {
      throw translateError(error, `opening the SQLite database "${typeof given === 'string' ? given : 'given'}"`);
    }
    try {
      this.#db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      // Refuse a newer schema before anything writes to the file (switching to WAL rewrites its header).
      const found = readSchemaVersion(this.#db);
      if (found > SCHEMA_VERSION) throw new SchemaVersionError(found, SCHEMA_VERSION);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma(`synchronous = ${synchronous}`);
      migrate(this.#db);
      this.#statements = prepareStatements(this.#db);
      this.#hot = preparePositional(this.#db);
      this.#fileGuard = typeof given === 'string' ? watchDatabaseFile(given, (guard) => this.#releaseMovedFile(guard)) : null;
    } catch (error) {
      if (this.#ownsDatabase) this.#db.close();
      throw translateError(error, 'preparing the SQLite database');
    }
    if (checkpoint === 'background' && typeof given === 'string' && given !== '' && given !== ':memory:' && !given.startsWith('file:')) {
      const path = given;
      this.#startCheckpointer = () => {
        this.#startCheckpointer = null;
        try {
          const guard = this.#fileGuard;
          this.#checkpointer = new Checkpointer(this.#db, {
            path: guard?.path ?? path,
            synchronous,
            intervalMs: BACKGROUND_CHECKPOINT_INTERVAL_MS,
            identities: guard?.identities ?? null,
            onFileMoved: () => guard?.isIntact(),
          });
        } catch {
          // No thread to be had: SQLite's automatic checkpoint stays on.
        }
      };
    }
    this.#writes = new WriteQueue(this.#statements, this.#clock, {
      groupCommit: opts.groupCommit ?? true,
      maxBatchSize,
      onCommit: () => {
        for (const row of this.#written) this.#known.remember(row);
        this.#written = [];
        if (this.#startCheckpointer !== null && ++this.#commits >= BACKGROUND_CHECKPOINT_AFTER_COMMITS) this.#startCheckpointer();
      },
      onRollback: () => {
        this.#written = [];
      },
      // The files are checked before a batch begins (so a batch is not written into a file that moved since the last
      // commit: a file moved away keeps exactly what its callers were told committed) and after its commit (a move
      // during the batch fails it). Each check is two stat calls, 2-5 µs a transaction, not a write.
      beforeBegin: () => this.#fileGuard?.check(),
      afterCommit: () => this.#fileGuard?.check(),
    });
    this.#schedules = new SqliteScheduleTable(this.#statements);
  }

  /**
   * Inserts a task in state Initialized with attempt 0.
   *
   * Rule: while a non-terminal task holds `uniqueKey`, inserting another with the same key inserts nothing
   * and returns that task with `created: false`; of concurrent inserts with one key, exactly one creates
   * (inserts run in `BEGIN IMMEDIATE` transactions, and a partial unique index backs the rule).
   *
   * @param task - the task; validated before anything is written
   * @returns the task and whether this call created it
   * @throws InvalidInputError when the param is not JSON, a date is invalid, or the id is taken; nothing is written
   * @throws RepositoryError when the database fails
   */
  async insert(task: NewTask): Promise<InsertResult> {
    const normalized = normalizeNewTask(task, this.#limits);
    const id = normalized.id ?? randomUUID();
    return this.#write('insert', (tx) => this.#insertOne(tx, normalized, id));
  }

  /**
   * Inserts many tasks in one transaction.
   *
   * Rule: the results are in input order; each follows the rule of {@link SqliteRepository.insert} (a later
   * input whose uniqueKey an earlier one of the same call holds gets that one with `created: false`); when
   * any input is invalid or any id is taken, nothing is written.
   *
   * @param tasks - the tasks
   * @returns one result per input, in order
   * @throws InvalidInputError on any bad input or taken id; nothing is written
   */
  async insertMany(tasks: readonly NewTask[]): Promise<InsertResult[]> {
    if (!Array.isArray(tasks)) throw new InvalidInputError('insertMany takes an array of tasks');
    const normalized = (tasks as readonly NewTask[]).map((task) => normalizeNewTask(task, this.#limits));
    if (normalized.length === 0) return [];
    const ids = normalized.map((task) => task.id ?? randomUUID());
    return this.#write('insertMany', (tx) => normalized.map((task, i) => this.#insertOne(tx, task, ids[i]!)), true);
  }

  /**
   * Reads one task.
   *
   * @throws TaskNotFoundError when no task has the id
   */
  getById(id: string): Promise<TaskInfo> {
    return settle(() => {
      checkId(id);
      const row = this.#read('getById', () => this.#statements.getById.get({ id }) as TaskRow | undefined);
      if (row === undefined) throw new TaskNotFoundError(id);
      return rowToTask(row);
    });
  }

  /**
   * Reads the tasks changed after `cursor` (null: from the start), at most `limit`, in commit order.
   *
   * Rule: a reader that pages from null until a page comes back empty sees every committed change of every
   * task at least once in its latest state. Every write sets the row's `change_seq` from a counter kept in
   * the same transaction; SQLite runs one write transaction at a time, so the numbers increase in commit
   * order and a reader's snapshot never holds a number above one it does not hold.
   *
   * @param cursor - the `cursor` of the previous page, or null
   * @param limit - the page size
   * @returns the changed tasks and the cursor for the next call (the given one when nothing changed)
   * @throws InvalidInputError on a cursor this repository did not make, or a bad limit
   */
  getUpdatedSince(cursor: string | null, limit: number): Promise<ChangePage> {
    return settle(() => {
      validateLimit(limit);
      const after = decodeChangeCursor(cursor);
      const rows = this.#read('getUpdatedSince', () => this.#statements.changesSince.all({ after, limit }) as TaskRow[]);
      const last = rows[rows.length - 1];
      return { tasks: rows.map(rowToTask), cursor: last === undefined ? String(after) : String(last.change_seq) };
    });
  }

  /**
   * A cursor at the current end of the change log.
   *
   * Rule: every change that commits after this call returns is seen by getUpdatedSince from this cursor.
   */
  getCursor(): Promise<string> {
    return settle(() => {
      const row = this.#read('getCursor', () => this.#statements.readChangeSeq.get() as { value: number });
      return String(row.value);
    });
  }

  /**
   * Lists Initialized tasks due before `before` (exclusive), ordered by scheduledAt, then id.
   *
   * @param options - `before`, the page size, and the `next` of the previous page
   * @returns a page; `next` is null on the last one
   * @throws InvalidInputError on a bad date, limit or cursor
   */
  listDue(options: { before: Date; limit: number; after?: string | null }): Promise<ListPage> {
    return settle(() => {
      assertValidDate(options?.before, 'before');
      validateLimit(options.limit);
      const after = decodePageCursor(options.after);
      const rows = this.#read(
        'listDue',
        () => this.#statements.listDue.all({ before: options.before.getTime(), afterAt: after.at, afterId: after.id, limit: options.limit + 1 }) as TaskRow[],
      );
      return toPage(rows, options.limit, (row) => row.scheduled_at);
    });
  }

  /**
   * Initialized → Working, and the run starts at once: takes a lease for `owner` until now + `leaseMs`
   * (`lease.started` true), sets a new token, counts a claim and an attempt, and resets `unstartedClaims`.
   *
   * Rule: of concurrent claims of one Initialized task exactly one returns the task, across processes too
   * (the compare-and-set runs in a `BEGIN IMMEDIATE` transaction); the others, and any claim of a task that
   * is not Initialized, return null. With `ifScheduledAt`, a claim returns null when the stored due time
   * differs. Both are checked before the due time: a claimable task not due yet by the repository's clock (the
   * process clock, or the `clock` option, which every process sharing the file shares) throws TaskNotDueError and
   * writes nothing. The winner's claim opens the `running` attempt record of the run in the same transaction; a claim
   * that returns null or throws records nothing.
   *
   * @throws TaskNotFoundError when no task has the id
   * @throws TaskNotDueError when the task is not due yet; nothing is written
   * @throws InvalidInputError on a bad owner, leaseMs or date
   */
  async claim(id: string, options: ClaimOptions & { ifScheduledAt?: Date }): Promise<TaskInfo | null> {
    checkId(id);
    const { owner, leaseMs } = checkClaimOptions(options);
    if (options.ifScheduledAt !== undefined) assertValidDate(options.ifScheduledAt, 'ifScheduledAt');
    const ifScheduledAt = options.ifScheduledAt?.getTime() ?? null;
    return this.#write('claim', (tx) => {
      const current = this.#readRow(id);
      if (current === undefined) throw new TaskNotFoundError(id);
      const row = this.#claimCurrent(tx, current, owner, leaseMs, ifScheduledAt, true);
      return row === null ? null : rowToTask(row);
    });
  }

  /**
   * Claims ahead: up to `limit` Initialized tasks due by the repository's clock go to Working under a lease for
   * `owner` whose run has not started (`lease.started` false); each counts a claim, but no attempt, and opens no
   * attempt record (markAsStarted does, when the run starts).
   *
   * Order: highest effective priority `priority + waitedMs / agingMs` first, then earliest due, then oldest, then id.
   * With the default agingMs (10 s) the due rows are one walk of the index `horae_tasks_aged` on `priority * 10000 -
   * scheduled_at`; with agingMs Infinity, or any other, the priority levels are read from the claim index and merged
   * (see claim-order.ts). Tasks due later are never claimed, nor, but for those due within (priority spread × agingMs)
   * from now on the aged index, read.
   *
   * Rule: no task is returned to two concurrent callers, in this process or another.
   *
   * @param options - owner, leaseMs, limit, optionally the works this node runs (an empty list claims nothing) and agingMs
   * @returns the claimed tasks, in claim order
   * @throws InvalidInputError on a bad owner, leaseMs, limit, workIds or agingMs; nothing is written
   */
  async claimDue(options: ClaimDueOptions): Promise<TaskInfo[]> {
    const { owner, leaseMs } = checkClaimOptions(options);
    validateLimit(options.limit);
    const agingMs = checkAgingMs(options.agingMs);
    const workIds = checkWorkIds(options.workIds);
    if (workIds?.length === 0) return [];
    const query: DueQuery = { limit: options.limit, agingMs, workIds, exclude: [] };
    return this.#write('claimDue', (tx) => {
      // The rows were read in this transaction, by this write: they are the stored ones.
      const claimed: TaskInfo[] = [];
      for (const current of this.#selectDue(tx, query)) {
        const row = this.#claimCurrent(tx, current, owner, leaseMs, null, false);
        if (row) claimed.push(rowToTask(row));
      }
      return claimed;
    });
  }

  /**
   * Starts the run of a claim made ahead by claimDue: counts the attempt, resets `unstartedClaims`, sets
   * `lease.started`, and opens the `running` attempt record (node = lease owner, startedAt = now), in one write. A
   * claim already started is returned unchanged (a retried write that had landed).
   *
   * Rule: calls made together share one transaction (group commit), and each is fenced on its own: a call whose token
   * no longer holds its task is refused and the others land. A claim this repository made is started without reading
   * its row first, while the stored row is still the remembered one (see KnownRows).
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  async markAsStarted(id: string, token: string): Promise<TaskInfo> {
    checkId(id);
    const held = tokenOrNull(token);
    return this.#write('markAsStarted', (tx) => {
      const s = this.#statements;
      const known = this.#known.peek(id);
      let seq: number | null = null;
      if (known !== undefined && known.state === 'Working' && known.lease_token === held && known.lease_started === 0) {
        seq = tx.nextSeq();
        // POSITIONAL_ORDER.startIfUnchanged: now, seq, id, knownSeq, token, now.
        if (this.#hot.startIfUnchanged.run(tx.now, seq, id, known.change_seq, held, tx.now).changes === 1) {
          return rowToTask(this.#startRun(tx, known, seq));
        }
      }
      const current = this.#readRow(id);
      if (current === undefined) throw new TaskNotFoundError(id);
      if (current.state !== 'Working' || current.lease_token !== held) throw new LeaseLostError(id);
      if (current.lease_started === 1) return rowToTask(current);
      if (current.lease_until === null || current.lease_until <= tx.now) throw leaseExpiredBeforeStart(id);
      const next = seq ?? tx.nextSeq();
      if (s.startKnown.run({ id, token: held, now: tx.now, seq: next }).changes !== 1) throw new LeaseLostError(id);
      return rowToTask(this.#startRun(tx, current, next));
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.WorkLimiter#claimWithinLimit}
   *
   * @implementation The count (a read of the partial index of Working rows by work) and the claim run in one
   * `BEGIN IMMEDIATE` transaction, which holds SQLite's single write lock: the limit holds across processes too. The due
   * check comes before the count: not due is a fact of the task, the limit one of the moment.
   */
  async claimWithinLimit(id: string, options: LimitedClaimOptions): Promise<LimitedClaim> {
    checkId(id);
    const { owner, leaseMs } = checkClaimOptions(options);
    validateMaxWorking(options.maxWorking);
    if (options.ifScheduledAt !== undefined) assertValidDate(options.ifScheduledAt, 'ifScheduledAt');
    const ifScheduledAt = options.ifScheduledAt?.getTime() ?? null;
    const maxWorking = options.maxWorking;
    return this.#write('claimWithinLimit', (tx): LimitedClaim => {
      const current = this.#requireRow(id);
      if (current.state !== 'Initialized' || (ifScheduledAt !== null && current.scheduled_at !== ifScheduledAt)) return null;
      assertDue(current, tx.now);
      if (this.#workingOf(current.work_id) >= maxWorking) return { refused: 'limit' };
      const row = this.#claimCurrent(tx, current, owner, leaseMs, ifScheduledAt, true);
      return row ? { task: rowToTask(row) } : null;
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.WorkLimiter#claimDueWithinLimits}
   *
   * @implementation One `BEGIN IMMEDIATE` transaction: counts the Working rows of each limited work, then reads due rows
   * in claim order (as claimDue reads them) leaving out the works already full, at most one pass per limited work plus
   * one. The claims are ahead, unstarted, as claimDue's.
   */
  async claimDueWithinLimits(options: LimitedClaimDueOptions): Promise<TaskInfo[]> {
    const { owner, leaseMs } = checkClaimOptions(options);
    validateLimit(options.limit);
    const limits = validateWorkLimits(options.workLimits);
    const agingMs = checkAgingMs(options.agingMs);
    const workIds = checkWorkIds(options.workIds);
    if (workIds?.length === 0) return [];
    const limit = options.limit;
    return this.#write('claimDueWithinLimits', (tx) => {
      const free = new Map([...limits].map(([workId, max]) => [workId, max - this.#workingOf(workId)]));
      const claimed: TaskInfo[] = [];
      // A pass that skips a row has just filled that row's work, which the next pass leaves out: at most one pass
      // per limited work, plus one. Rows are claimed as they are picked, so a later pass does not see them again.
      for (let pass = 0; pass <= limits.size && claimed.length < limit; pass++) {
        const rows = this.#selectDue(tx, { limit: limit - claimed.length, agingMs, workIds, exclude: fullWorks(free) });
        const taken = new Set(
          pickWithinLimits(
            rows.map((row) => ({ id: row.id, workId: row.work_id })),
            free,
            limit - claimed.length,
          ),
        );
        for (const current of rows) {
          if (!taken.has(current.id)) continue;
          const row = this.#claimCurrent(tx, current, owner, leaseMs, null, false);
          if (row) claimed.push(rowToTask(row));
        }
        if (taken.size === rows.length) break;
      }
      return claimed;
    });
  }

  /**
   * Extends the lease of a Working task held with `token` to now + `leaseMs`.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  async renewLease(id: string, token: string, leaseMs: number): Promise<TaskInfo> {
    checkId(id);
    const held = tokenOrNull(token);
    validateLeaseMs(leaseMs);
    return this.#write('renewLease', (tx) => {
      const row = this.#statements.renewLease.get({ id, token: held, until: tx.now + leaseMs, now: tx.now, seq: tx.nextSeq() }) as TaskRow | undefined;
      // The holder's markAsDone comes next.
      if (row !== undefined) this.#written.push(row);
      return this.#held(id, row);
    });
  }

  /**
   * Working → Initialized, due at `runAt`; the lease is cleared, `error` becomes lastError, and with
   * `refundAttempt` the attempt counted at the run's start is given back. The run's attempt record is closed
   * `retried` with the error when one is given, else `released`, in the same transaction. A claim ahead whose run
   * never started spent no attempt and has no record: it goes back as it came (`claims` keeps counting it).
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   */
  async release(id: string, token: string, options: ReleaseOptions): Promise<TaskInfo> {
    checkId(id);
    const held = tokenOrNull(token);
    assertValidDate(options?.runAt, 'runAt');
    const lastError = options.error === undefined ? null : JSON.stringify(normalizeTaskError(options.error));
    const refund = options.refundAttempt === true ? 1 : 0;
    const runAt = options.runAt.getTime();
    const outcome: EndOutcome = lastError === null ? 'released' : 'retried';
    return this.#write('release', (tx) => {
      const row = this.#statements.release.get({ id, token: held, runAt, lastError, refund, now: tx.now, seq: tx.nextSeq() }) as TaskRow | undefined;
      return this.#held(id, this.#endAttempt(tx, row, outcome, lastError));
    });
  }

  /**
   * Working → Done.
   *
   * Rule: succeeds only while the task is Working under `token` and its run has started; a zombie whose lease was
   * reclaimed is refused, so its result is discarded. The run's attempt record is closed `succeeded` in the same
   * transaction. Calls made together share one transaction (group commit), each fenced on its own.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws InvalidStateError when the task is Working under this token but its run has not started; nothing is written
   * @throws TaskNotFoundError when no task has the id
   */
  async markAsDone(id: string, token: string): Promise<TaskInfo> {
    checkId(id);
    const held = tokenOrNull(token);
    return this.#write('markAsDone', (tx) => {
      const s = this.#statements;
      // The row this repository claimed or started, if it still is the stored one (the UPDATE checks its change_seq):
      // no read.
      const known = this.#known.peek(id);
      let seq: number | null = null;
      if (known !== undefined && known.state === 'Working' && known.lease_token === held && known.lease_started === 1) {
        this.#known.forget(id);
        seq = tx.nextSeq();
        // POSITIONAL_ORDER.markAsDoneIfUnchanged: now, seq, id, knownSeq, token.
        if (this.#hot.markAsDoneIfUnchanged.run(tx.now, seq, id, known.change_seq, held).changes === 1) {
          return rowToTask(this.#endAttempt(tx, doneRow(known, tx.now, seq), 'succeeded', null)!);
        }
      }
      // Read, then write without RETURNING (see STATEMENT_SQL.rowForWrite): nothing else writes between the two,
      // inside the transaction, and the UPDATE still checks the state and the token.
      const current = this.#readRow(id);
      if (current === undefined) throw new TaskNotFoundError(id);
      if (current.state !== 'Working' || current.lease_token !== held) throw new LeaseLostError(id);
      if (current.lease_started !== 1) throw new InvalidStateError(id, UNSTARTED, 'mark as done');
      const row = doneRow(current, tx.now, seq ?? tx.nextSeq());
      if (s.markAsDoneKnown.run({ id, token: held, now: tx.now, seq: row.change_seq }).changes !== 1) throw new LeaseLostError(id);
      return rowToTask(this.#endAttempt(tx, row, 'succeeded', null)!);
    });
  }

  /**
   * Working → Failed under `token`, or Initialized → Failed without one (a task that can never run). Out of
   * Working, the run's attempt record is closed `failed` with the error in the same transaction; out of
   * Initialized no run happened and nothing is recorded.
   *
   * Rule: with a token, the run must have started, and calls made together share one transaction, each fenced on its
   * own.
   *
   * @throws LeaseLostError when a token is given and the task is not Working under it
   * @throws InvalidStateError when no token is given and the task is not Initialized, or a token is given and the run
   * of its claim has not started; nothing is written
   * @throws TaskNotFoundError when no task has the id
   */
  async markAsFailed(id: string, error: TaskError, token?: string): Promise<TaskInfo> {
    checkId(id);
    const held = token === undefined ? undefined : tokenOrNull(token);
    const lastError = JSON.stringify(normalizeTaskError(error));
    return this.#write('markAsFailed', (tx) => {
      const s = this.#statements;
      const params = { id, lastError, now: tx.now, seq: tx.nextSeq() };
      if (held !== undefined) {
        const row = this.#endAttempt(tx, s.failHeld.get({ ...params, token: held }) as TaskRow | undefined, 'failed', lastError);
        return row === undefined ? this.#refusedEnd(id, held, 'fail') : rowToTask(row);
      }
      // Out of Initialized no run happened: no attempt to record.
      const row = s.failInitialized.get(params) as TaskRow | undefined;
      if (row !== undefined) return rowToTask(row);
      throw new InvalidStateError(id, this.#requireRow(id).state, 'fail without a lease');
    });
  }

  /**
   * Initialized or Working → Cancelled. Without a token any node or operator may cancel; with one, only the
   * holder of the lease may. The `reason` is not stored (as in MemoryRepository: TaskInfo has no field for it).
   * Out of Working, the run's attempt record is closed `cancelled` in the same transaction; a claim ahead whose run
   * never started has none.
   *
   * Rule: of concurrent cancels exactly one returns `cancelled: true`; a task already terminal is returned
   * unchanged with `cancelled: false` (with or without a token).
   *
   * @throws LeaseLostError when a token is given and the live task is not Working under it
   * @throws TaskNotFoundError when no task has the id
   */
  async markAsCancelled(id: string, options?: { token?: string; reason?: string }): Promise<{ task: TaskInfo; cancelled: boolean }> {
    checkId(id);
    const token = options?.token === undefined ? undefined : tokenOrNull(options.token);
    return this.#write('markAsCancelled', (tx) => {
      const s = this.#statements;
      const params = { id, now: tx.now, seq: tx.nextSeq() };
      const row = (token === undefined ? s.cancel.get(params) : s.cancelHeld.get({ ...params, token })) as TaskRow | undefined;
      // Out of Initialized the last attempt (if any) is already closed, so only a cancelled run is recorded.
      if (row !== undefined) {
        this.#endAttempt(tx, row, 'cancelled', null);
        return { task: rowToTask(row), cancelled: true };
      }
      const current = this.#requireRow(id);
      if (isTerminal(current.state)) return { task: rowToTask(current), cancelled: false };
      throw new LeaseLostError(id);
    });
  }

  /**
   * Changes the due time, param or priority of an Initialized task.
   *
   * @throws InvalidStateError when the task is not Initialized
   * @throws InvalidInputError on a bad patch; nothing is written
   * @throws TaskNotFoundError when no task has the id
   */
  async update(id: string, patch: TaskPatch): Promise<TaskInfo> {
    checkId(id);
    validatePatch(patch, this.#limits);
    const values = {
      scheduledAt: patch.scheduledAt?.getTime() ?? null,
      param: patch.param === undefined ? null : JSON.stringify(patch.param),
      priority: patch.priority ?? null,
    };
    return this.#write('update', (tx) => {
      const row = this.#statements.update.get({ id, ...values, now: tx.now, seq: tx.nextSeq() }) as TaskRow | undefined;
      if (row !== undefined) return rowToTask(row);
      throw new InvalidStateError(id, this.#requireRow(id).state, 'update');
    });
  }

  /**
   * Records the progress of a Working task held with `token`, stamped with the repository's clock. When
   * `progress.message` is set and differs from the last check-in of the running attempt, it is appended to that
   * attempt's check-ins in the same transaction; the latest {@link MAX_CHECK_INS_PER_ATTEMPT} are kept.
   *
   * @throws LeaseLostError when the task is not Working under this token
   * @throws TaskNotFoundError when no task has the id
   * @throws InvalidInputError on a malformed progress report
   */
  async setProgress(id: string, token: string, progress: Omit<TaskProgress, 'at'>): Promise<void> {
    checkId(id);
    const held = tokenOrNull(token);
    assertProgress(progress);
    const message = progress.message;
    return this.#write('setProgress', (tx) => {
      const s = this.#statements;
      const row = s.setProgress.get({ id, token: held, progress: progressToText(progress, tx.now), now: tx.now, seq: tx.nextSeq() }) as { runs: number } | undefined;
      if (row === undefined) {
        this.#requireRow(id);
        throw new LeaseLostError(id);
      }
      if (message !== undefined) {
        alsoWrite('recording a check-in', () => s.addCheckIn.run({ id, run: row.runs, message, now: tx.now, maxCheckIns: MAX_CHECK_INS_PER_ATTEMPT }));
      }
    });
  }

  /**
   * Working tasks whose lease expired (lease.until ≤ now) are taken back; their lease is cleared, so the old holder's
   * token is refused.
   *
   * A run that had started spent its attempt: the task goes back to Initialized, due now, with lastError
   * `{ message: 'lease expired', code: 'LEASE_EXPIRED' }`, or to Failed when attempt ≥ maxAttempts; its attempt record
   * is closed `lease-expired` with that error in the same transaction. A claim ahead whose run never started spent
   * none: `unstartedClaims` + 1, and the task goes back to Initialized, due now (its lastError kept), or, when that
   * reaches `maxUnstartedClaims`, to Failed as a poison task (`poisonTaskError`); no record either way.
   *
   * Rule: each expired task is reclaimed by exactly one concurrent caller, in this process or another.
   *
   * @param options - `limit`: at most this many (all expired ones when left out); `maxUnstartedClaims` (default 3)
   * @returns the reclaimed tasks, in their new state, oldest expiry first
   * @throws InvalidInputError on a bad limit or maxUnstartedClaims; nothing is written
   */
  async reclaimExpired(options?: ReclaimOptions): Promise<TaskInfo[]> {
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new InvalidInputError('reclaimExpired takes options { limit?, maxUnstartedClaims? }');
    const limit = options?.limit ?? -1;
    if (limit !== -1) validateLimit(limit);
    const maxUnstartedClaims = checkMaxUnstartedClaims(options?.maxUnstartedClaims);
    const lastError = JSON.stringify(LEASE_EXPIRED_ERROR);
    return this.#write('reclaimExpired', (tx) => {
      const s = this.#statements;
      const expired = s.selectExpired.all({ now: tx.now, limit }) as { id: string; lease_started: number; unstarted_claims: number }[];
      const reclaimed: TaskInfo[] = [];
      for (const { id, lease_started: started, unstarted_claims: before } of expired) {
        let row: TaskRow | undefined;
        if (started === 1) {
          row = this.#endAttempt(tx, s.reclaim.get({ id, lastError, now: tx.now, seq: tx.nextSeq() }) as TaskRow | undefined, 'lease-expired', lastError);
        } else {
          // The holder died (or stalled) before the run started: no attempt spent, but a task that keeps taking its
          // claimers down before they start it must not be claimed forever.
          const poisoned = before + 1 >= maxUnstartedClaims;
          row = s.reclaimUnstarted.get({
            id,
            state: poisoned ? 'Failed' : 'Initialized',
            lastError: poisoned ? JSON.stringify(poisonTaskError(before + 1)) : null,
            unstartedClaims: before,
            now: tx.now,
            seq: tx.nextSeq(),
          }) as TaskRow | undefined;
        }
        if (row !== undefined) reclaimed.push(rowToTask(row));
      }
      return reclaimed;
    });
  }

  /**
   * Lists tasks, by state and/or workId, ordered by createdAt then id, in pages.
   *
   * @throws InvalidInputError on a bad state, limit or cursor
   */
  list(options: ListOptions = {}): Promise<ListPage> {
    return settle(() => {
      const limit = options.limit ?? 100;
      validateLimit(limit);
      const state = options.state;
      if (state !== undefined && !ALL_TASK_STATES.includes(state)) throw new InvalidInputError(`state must be one of ${ALL_TASK_STATES.join(', ')}, got ${quoteInput(state)}`);
      const workId = options.workId;
      if (workId !== undefined) assertNonEmptyString(workId, 'workId');
      const after = decodePageCursor(options.after);
      const s = this.#statements;
      const statement = state === undefined ? (workId === undefined ? s.listAll : s.listByWork) : workId === undefined ? s.listByState : s.listByStateAndWork;
      const rows = this.#read('list', () => statement.all({ state, workId, afterAt: after.at, afterId: after.id, limit: limit + 1 }) as TaskRow[]);
      return toPage(rows, limit, (row) => row.created_at);
    });
  }

  /** Counts tasks by state; every state is present. */
  countByState(): Promise<Record<TaskState, number>> {
    return settle(() => {
      const rows = this.#read('countByState', () => this.#statements.countByState.all() as { state: TaskState; n: number }[]);
      const counts = Object.fromEntries(ALL_TASK_STATES.map((state) => [state, 0])) as Record<TaskState, number>;
      for (const row of rows) counts[row.state] = row.n;
      return counts;
    });
  }

  /**
   * The execution history of a task: one record per run, oldest first, read through the primary key
   * `(task_id, run)` of `horae_task_attempts`.
   *
   * Rule: each record is written in the transaction of the transition it records: a run's start (claim, or
   * markAsStarted after claimDue) opens a `running` record (node = lease owner), and a claim ahead whose run never
   * started has none; markAsDone closes it `succeeded`; markAsFailed out of
   * Working closes it `failed` with the error; release closes it `retried` (with the error) when an error is
   * given, else `released`; markAsCancelled out of Working closes it `cancelled`; reclaimExpired closes it
   * `lease-expired`. A transition that is refused writes no record. A task from a file of schema version 3
   * or older has no record of the runs it made before the upgrade.
   *
   * @param taskId - the task
   * @returns its attempts, oldest first; empty for a task that never ran
   * @throws TaskNotFoundError when no task has the id
   */
  listAttempts(taskId: string): Promise<TaskAttempt[]> {
    return settle(() => {
      checkId(taskId);
      const rows = this.#read('listAttempts', () => this.#statements.listAttempts.all({ id: taskId }) as AttemptRow[]);
      if (rows.length === 0 && this.#read('listAttempts', () => this.#statements.getById.get({ id: taskId })) === undefined) throw new TaskNotFoundError(taskId);
      return rows.map(rowToAttempt);
    });
  }

  /**
   * Deletes Done, Cancelled and Failed tasks last updated before `before`, with their attempt records, in one
   * transaction.
   *
   * @returns how many tasks were deleted
   * @throws InvalidInputError on a bad date
   */
  async deleteTerminalBefore(before: Date): Promise<number> {
    assertValidDate(before, 'before');
    const params = { before: before.getTime() };
    return this.#write(
      'deleteTerminalBefore',
      () => {
        this.#statements.deleteAttemptsOfTerminalBefore.run(params);
        return this.#statements.deleteTerminalBefore.run(params).changes;
      },
      true,
    );
  }

  /**
   * Creates a schedule, or brings a stored one up to date with `definition`.
   *
   * Rules: as {@link ScheduleStore.upsertSchedule}; of concurrent upserts of one new name, on any connection or
   * process, exactly one returns `created: true` (the read and the write share one `BEGIN IMMEDIATE` transaction).
   *
   * @throws InvalidInputError on a bad definition; nothing is written
   */
  upsertSchedule(definition: ScheduleDefinition): Promise<UpsertScheduleResult> {
    return settle(() => normalizeScheduleDefinition(definition, this.#limits)).then((next) => this.#write('upsertSchedule', (tx) => this.#schedules.upsert(tx, next)));
  }

  /** Reads one schedule. @throws ScheduleNotFoundError when no schedule has the name */
  getSchedule(name: string): Promise<Schedule> {
    return settle(() => {
      validateScheduleName(name);
      return this.#read('getSchedule', () => this.#schedules.get(name));
    });
  }

  /**
   * Lists schedules ordered by name, or, with `dueBy`, the unpaused schedules due by then, ordered by
   * nextRunAt, then name.
   *
   * @throws InvalidInputError on a bad `dueBy`
   */
  listSchedules(options: ListSchedulesOptions = {}): Promise<Schedule[]> {
    return settle(() => {
      if (options === null || typeof options !== 'object') throw new InvalidInputError('listSchedules takes an options object');
      if (options.dueBy !== undefined) assertValidDate(options.dueBy, 'dueBy');
      return this.#read('listSchedules', () => this.#schedules.list(options.dueBy));
    });
  }

  /**
   * Pauses or resumes a schedule; resuming recomputes nextRunAt after the later of now and lastOccurrenceAt.
   *
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  setSchedulePaused(name: string, paused: boolean): Promise<Schedule> {
    return settle(() => {
      if (typeof paused !== 'boolean') throw new InvalidInputError(`paused must be a boolean, got ${quoteInput(paused)}`);
      validateScheduleName(name);
    }).then(() => this.#write('setSchedulePaused', (tx) => this.#schedules.setPaused(tx, name, paused)));
  }

  /**
   * Deletes a schedule; its materialized tasks stay.
   *
   * Rule: of concurrent removes exactly one succeeds; the others throw ScheduleNotFoundError.
   *
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  removeSchedule(name: string): Promise<void> {
    return settle(() => validateScheduleName(name)).then(() => this.#write('removeSchedule', () => this.#schedules.remove(name)));
  }

  /**
   * Moves nextRunAt to at most now + `withinMs`; never later.
   *
   * @throws InvalidInputError when `withinMs` is not an integer ≥ 0
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  pullScheduleForward(name: string, withinMs: number): Promise<Schedule> {
    return settle(() => {
      if (typeof withinMs !== 'number' || !Number.isSafeInteger(withinMs) || withinMs < 0) throw new InvalidInputError(`withinMs must be an integer ≥ 0, got ${quoteInput(withinMs)}`);
      validateScheduleName(name);
    }).then(() => this.#write('pullScheduleForward', (tx) => this.#schedules.pullForward(tx, name, withinMs)));
  }

  /**
   * Records the occurrences dealt with, as a compare-and-set on `version`.
   *
   * Rule: of concurrent advances from one version, on any connection or process, exactly one returns the
   * schedule; the others return null and write nothing.
   *
   * @throws InvalidInputError on a bad date or version
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  advanceSchedule(name: string, advance: ScheduleAdvance): Promise<Schedule | null> {
    return settle(() => {
      validateScheduleAdvance(advance);
      validateScheduleName(name);
    }).then(() => this.#write('advanceSchedule', (tx) => this.#schedules.advance(tx, name, advance)));
  }

  /**
   * The status hook outbox on this database (`horae_hook_outbox`), sharing the write queue's transactions.
   *
   * @returns the same {@link SqliteHookOutbox} on every call
   */
  hookOutbox(): HookOutbox {
    this.#hookOutbox ??= new SqliteHookOutbox({
      db: this.#db,
      write: (action, run) => this.#write(action, run),
      read: (action, run) => this.#read(action, run),
    });
    return this.#hookOutbox;
  }

  /**
   * Operator search over `horae_tasks` (see {@link SqliteTaskSearch} for which index serves which filter; a param
   * match reads the params of the rows the other filters select). Reads run on this connection and see what it
   * committed.
   *
   * @returns the same {@link SqliteTaskSearch} on every call
   */
  taskSearch(): TaskSearch {
    this.#taskSearch ??= new SqliteTaskSearch({ db: this.#db, read: (action, run) => this.#read(action, run) });
    return this.#taskSearch;
  }

  /**
   * Commits the writes still queued, then closes the database if the repository opened it; a `Database`
   * given by the caller stays open. Resolves once the background checkpoint thread (if any) has closed its own
   * connection, so the file and its `-wal`/`-shm` companions may be moved or deleted then. Later calls fail with a
   * RepositoryError. Calling it twice does nothing.
   */
  async close(): Promise<void> {
    let checkpointerStopped: Promise<void> | undefined;
    await settle(() => {
      if (this.#closed) return;
      this.#closed = true;
      if (this.#db.open || this.#fileGuard?.failure) this.#writes.flush();
      else this.#writes.rejectAll('the SQLite database was closed');
      this.#startCheckpointer = null;
      checkpointerStopped = this.#checkpointer?.close();
      if (this.#ownsDatabase && this.#db.open && this.#fileGuard?.mayClose() !== false) this.#db.close();
    });
    // Once close() resolves nothing touches the file any more: the checkpoint thread has closed its connection.
    await checkpointerStopped;
  }

  #checkOpen(): void {
    this.#fileGuard?.assertIntact();
    if (this.#closed) throw new RepositoryError('the SqliteRepository is closed');
  }

  /**
   * The file was deleted, moved or replaced: its log is checkpointed into the file the connection opened (a file moved
   * away keeps every commit, under its new name), the stale log cleared from the old path, the checkpoint thread
   * stopped, and the connection closed when that is safe (see mayClose).
   */
  #releaseMovedFile(guard: DatabaseFileGuard): void {
    this.#startCheckpointer = null;
    void this.#checkpointer?.close();
    if (this.#db.open && guard.mayClose()) {
      try {
        this.#db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // Busy or failing: the log keeps its commits, and clearStaleLog renames it aside rather than delete it.
      }
    }
    const setAside = guard.clearStaleLog();
    if (setAside !== undefined) {
      process.emitWarning(`the -wal log of the SQLite file that was moved or deleted still held commits; kept as ${setAside}`, { code: 'HORAE_ORPHANED_WAL' });
    }
    if (this.#ownsDatabase && this.#db.open && guard.mayClose()) this.#db.close();
  }

  #read<T>(action: string, run: () => T): T {
    this.#checkOpen();
    try {
      return run();
    } catch (error) {
      throw translateError(error, action);
    }
  }

  #write<T>(action: string, run: (tx: WriteContext) => T, isolated = false): Promise<T> {
    this.#checkOpen();
    return this.#writes.submit(action, run, isolated);
  }

  #insertOne(tx: WriteContext, task: NormalizedNewTask, id: string): InsertResult {
    const s = this.#statements;
    if (task.id !== undefined && s.getById.get({ id }) !== undefined) throw idTakenError(id, undefined);
    if (task.uniqueKey !== null) {
      const live = s.liveByUniqueKey.get({ uniqueKey: task.uniqueKey }) as TaskRow | undefined;
      if (live !== undefined) return { task: rowToTask(live), created: false };
    }
    // The row is built here rather than read back with RETURNING: an INSERT … RETURNING costs several
    // times a plain INSERT in SQLite, and every value of the row is known.
    const row: TaskRow = {
      id,
      work_id: task.workId,
      param: JSON.stringify(task.param),
      scheduled_at: task.scheduledAt.getTime(),
      state: 'Initialized',
      priority: task.priority,
      attempt: 0,
      max_attempts: task.maxAttempts,
      lease_owner: null,
      lease_until: null,
      lease_token: null,
      last_error: null,
      unique_key: task.uniqueKey,
      progress: null,
      created_at: tx.now,
      updated_at: tx.now,
      change_seq: tx.nextSeq(),
      kind: task.kind,
      schedule_name: task.scheduleName,
      runs: 0,
      claims: 0,
      unstarted_claims: 0,
      lease_started: 0,
    };
    try {
      s.insert.run({
        id,
        workId: row.work_id,
        param: row.param,
        scheduledAt: row.scheduled_at,
        priority: row.priority,
        maxAttempts: row.max_attempts,
        uniqueKey: row.unique_key,
        now: tx.now,
        seq: row.change_seq,
        kind: row.kind,
        scheduleName: row.schedule_name,
      });
    } catch (error) {
      if (isIdTakenError(error)) throw idTakenError(id, error);
      // The unique index on live keys refused the row: a holder exists after all, so this insert is a no-op.
      if (task.uniqueKey !== null && isConstraintError(error)) {
        const live = s.liveByUniqueKey.get({ uniqueKey: task.uniqueKey }) as TaskRow | undefined;
        if (live !== undefined) return { task: rowToTask(live), created: false };
      }
      throw error;
    }
    return { task: rowToTask(row), created: true };
  }

  /**
   * Claims a row read in this transaction (by this write): with `start`, a claim by id, whose run starts in the same
   * write and opens its attempt record; without, a claim ahead, unstarted, with no record.
   *
   * It writes without RETURNING and builds the claimed row in JS (see STATEMENT_SQL.rowForWrite): inside the
   * transaction nothing else writes between the read and the write, and the UPDATE still holds the whole
   * compare-and-set.
   *
   * @returns the claimed row; null when the task is not claimable (not Initialized, or due at another time than
   * `ifScheduledAt`)
   * @throws TaskNotDueError when a claim by id finds the task claimable but not due yet (nothing is written)
   */
  #claimCurrent(tx: WriteContext, current: TaskRow, owner: string, leaseMs: number, ifScheduledAt: number | null, start: boolean): TaskRow | null {
    const id = current.id;
    if (current.state !== 'Initialized' || (ifScheduledAt !== null && current.scheduled_at !== ifScheduledAt)) return null;
    // A claim ahead reads only due rows; a claim by id comes from a node's timer, which may run ahead of this clock.
    if (start) assertDue(current, tx.now);
    const claimed: TaskRow = {
      ...current,
      state: 'Working',
      lease_owner: owner,
      lease_until: tx.now + leaseMs,
      lease_token: randomUUID(),
      lease_started: 0,
      claims: current.claims + 1,
      progress: null,
      updated_at: Math.max(tx.now, current.created_at),
      change_seq: tx.nextSeq(),
    };
    const row: TaskRow = start ? { ...claimed, lease_started: 1, unstarted_claims: 0, attempt: current.attempt + 1, runs: current.runs + 1 } : claimed;
    const statement = start ? this.#hot.claimKnown : this.#hot.claimAheadKnown;
    // POSITIONAL_ORDER.claimKnown / claimAheadKnown: owner, until, newToken, now, seq, id, now, ifScheduledAt, ifScheduledAt.
    const { changes } = statement.run(owner, row.lease_until, row.lease_token, tx.now, row.change_seq, id, tx.now, ifScheduledAt, ifScheduledAt);
    if (changes !== 1) return null;
    // startedAt is the claim's updatedAt: the same instant, never below createdAt. POSITIONAL_ORDER.openAttempt: id, run,
    // attempt, owner, now.
    if (start) alsoWrite('recording the attempt of a claim', () => this.#hot.openAttempt.run(id, row.runs, row.attempt, owner, row.updated_at));
    this.#written.push(row);
    return row;
  }

  /**
   * The row of `current` (a claim ahead, unstarted) once its run has started, after the statement that started it
   * wrote it with `seq`; opens the `running` attempt record of the run in the same transaction and remembers the row
   * for the markAsDone that follows.
   */
  #startRun(tx: WriteContext, current: TaskRow, seq: number): TaskRow {
    const row: TaskRow = {
      ...current,
      lease_started: 1,
      unstarted_claims: 0,
      attempt: current.attempt + 1,
      runs: current.runs + 1,
      updated_at: Math.max(tx.now, current.created_at),
      change_seq: seq,
    };
    const owner = row.lease_owner;
    // POSITIONAL_ORDER.openAttempt: id, run, attempt, owner, now.
    alsoWrite('recording the attempt of a started run', () => this.#hot.openAttempt.run(row.id, row.runs, row.attempt, owner, row.updated_at));
    this.#written.push(row);
    return row;
  }

  /**
   * Reads up to `query.limit` due Initialized rows in claim order (see {@link SqliteRepository.claimDue}), as whole rows,
   * inside the claim's transaction.
   */
  #selectDue(tx: WriteContext, query: DueQuery): TaskRow[] {
    const s = this.#statements;
    const { limit, agingMs } = query;
    const filtered = query.workIds !== null || query.exclude.length > 0;
    const filters = filtered ? { workIds: query.workIds === null ? null : JSON.stringify(query.workIds), exclude: JSON.stringify(query.exclude) } : {};
    if (agingMs === INDEXED_AGING_MS) {
      const params = { now: tx.now, limit, ...filters };
      return (filtered ? s.selectDueAgedFiltered : s.selectDueAged).all(params).map(asRow);
    }
    return mergeLevels(
      {
        topPriorityBelow: (below) => (s.topPriorityBelow.get({ below }) as { priority: number | null }).priority,
        dueOfLevel: (priority, n) => (filtered ? s.selectDueFiltered : s.selectDue).all({ priority, now: tx.now, limit: n, ...filters }).map(asRow),
        earliestDue: () => (s.earliestDue.get() as { at: number | null }).at,
      },
      limit,
      agingMs,
    );
  }

  /**
   * The current row of a task, read through the primary key as an array (cheaper than an object per row), or as
   * an object from a driver slice without `raw`.
   */
  #readRow(id: string): TaskRow | undefined {
    const read = this.#statements.rowForWrite.get({ id });
    return read === undefined ? undefined : asRow(read);
  }

  /**
   * Closes the running attempt of a row that a transition just took out of Working, in the same transaction. A claim
   * ahead whose run never started has none (its `lease_started`, which transitions leave as it was, says so).
   *
   * @param row - what the transition's statement returned; undefined when it was refused (nothing is recorded)
   * @returns `row`
   */
  #endAttempt(tx: WriteContext, row: TaskRow | undefined, outcome: EndOutcome, error: string | null): TaskRow | undefined {
    if (row !== undefined && row.lease_started === 1) {
      // POSITIONAL_ORDER.closeAttempt: outcome, now, error, id, run.
      alsoWrite(`recording the ${outcome} attempt`, () => this.#hot.closeAttempt.run(outcome, tx.now, error, row.id, row.runs));
    }
    return row;
  }

  /** The task a write under a lease returned, or why it returned nothing. */
  #held(id: string, row: TaskRow | undefined): TaskInfo {
    if (row !== undefined) return rowToTask(row);
    this.#requireRow(id);
    throw new LeaseLostError(id);
  }

  /**
   * Why an end of a run under `token` (whose statement changed nothing) was refused.
   *
   * @throws TaskNotFoundError when no task has the id
   * @throws LeaseLostError when the task is not Working under `token`
   * @throws InvalidStateError when it is, but its run has not started
   */
  #refusedEnd(id: string, token: string | null, action: string): never {
    const current = this.#requireRow(id);
    if (current.state !== 'Working' || current.lease_token !== token) throw new LeaseLostError(id);
    throw new InvalidStateError(id, UNSTARTED, action);
  }

  /** How many tasks of `workId` are Working (expired leases included, until reclaimed). */
  #workingOf(workId: string): number {
    return (this.#statements.countWorkingOfWork.get({ workId }) as { n: number }).n;
  }

  #requireRow(id: string): TaskRow {
    const row = this.#statements.getById.get({ id }) as TaskRow | undefined;
    if (row === undefined) throw new TaskNotFoundError(id);
    return row;
  }
}

/**
 * A row read by a statement of STATEMENT_SQL that selects {@link TASK_ROW_COLUMNS}: an array of values (`raw`), or an
 * object from a driver slice without `raw`.
 */
function asRow(read: unknown): TaskRow {
  return Array.isArray(read) ? tupleToRow(read) : (read as TaskRow);
}

/** The row of `current` (a Working row) once markAsDone has written it: what markAsDoneKnown's SET does, in JS. */
function doneRow(current: TaskRow, now: number, seq: number): TaskRow {
  return {
    ...current,
    state: 'Done',
    lease_owner: null,
    lease_until: null,
    lease_token: null,
    updated_at: Math.max(now, current.created_at),
    change_seq: seq,
  };
}

/** @throws TaskNotDueError when `row` is due after `now` (epoch ms, the repository's clock) */
function assertDue(row: TaskRow, now: number): void {
  const dueInMs = row.scheduled_at - now;
  if (dueInMs > 0) throw new TaskNotDueError(row.id, dueInMs);
}

/**
 * The `workIds` of a claim of due tasks.
 *
 * @returns the list, or null when left out (every work)
 * @throws InvalidInputError unless it is an array of strings
 */
function checkWorkIds(workIds: unknown): readonly string[] | null {
  if (workIds === undefined) return null;
  if (!Array.isArray(workIds) || workIds.some((w) => typeof w !== 'string')) throw new InvalidInputError('workIds must be an array of strings');
  return workIds as string[];
}

/** A non-string id names no task. @throws TaskNotFoundError */
function checkId(id: unknown): asserts id is string {
  if (typeof id !== 'string') throw new TaskNotFoundError(String(id));
}

/** A token that is not a string holds no lease: it is bound as NULL, which matches no row. */
function tokenOrNull(token: unknown): string | null {
  return typeof token === 'string' ? token : null;
}

/** Runs synchronous driver work as a promise, so that what it throws arrives as a rejection. */
function settle<T>(run: () => T): Promise<T> {
  try {
    return Promise.resolve(run());
  } catch (error) {
    // Everything thrown here is an Error: a HoraeError, or one translated by #read.
    return Promise.reject(error instanceof Error ? error : new RepositoryError(String(error)));
  }
}

function checkClaimOptions(options: ClaimOptions): ClaimOptions {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('claim options must be an object');
  validateOwner(options.owner);
  validateLeaseMs(options.leaseMs);
  return { owner: options.owner, leaseMs: options.leaseMs };
}

/** Cuts a page fetched with limit + 1 rows: the extra row only says there is a next page. */
function toPage(rows: TaskRow[], limit: number, timeOf: (row: TaskRow) => number): ListPage {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  const next = rows.length > limit && last !== undefined ? encodePageCursor({ at: timeOf(last), id: last.id }) : null;
  return { tasks: page.map(rowToTask), next };
}
