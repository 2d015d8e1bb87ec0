/**
 * {@link PostgresRepository}: the Repository contract on PostgreSQL through the `pg` driver.
 */
import { createHash, randomUUID } from 'node:crypto';
import { InvalidInputError, quoteInput } from '@horae/core';
import {
  ALL_TASK_STATES,
  checkAgingMs,
  checkMaxUnstartedClaims,
  InvalidStateError,
  LeaseLostError,
  leaseExpiredBeforeStart,
  MAX_CHECK_INS_PER_ATTEMPT,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_ERROR_STACK_LENGTH,
  MAX_ERROR_NAME_LENGTH,
  RepositoryError,
  ValueRefusedError,
  MAX_WORK_ID_LENGTH,
  TaskNotDueError,
  TaskNotFoundError,
  normalizeNewTask,
  poisonTaskError,
  validateLeaseMs,
  validateLimit,
  validatePatch,
  validateOwner,
  checkMaxParamBytes,
  fullWorks,
  pickWithinLimits,
  validateMaxWorking,
  validateWorkLimits,
  type ChangeNotifier,
  type WriteLimits,
  type LimitedClaim,
  type LimitedClaimDueOptions,
  type LimitedClaimOptions,
  type WorkLimiter,
  type HookOutbox,
  type HookOutboxProvider,
  type TaskSearch,
  type TaskSearchProvider,
  type ChangePage,
  type ClaimDueOptions,
  type ClaimOptions,
  type InsertResult,
  type ListOptions,
  type ListSchedulesOptions,
  type ListPage,
  type NewTask,
  type NormalizedNewTask,
  type ReclaimOptions,
  type ReleaseOptions,
  type Repository,
  type Schedule,
  type ScheduleAdvance,
  type ScheduleDefinition,
  type ScheduleStore,
  type TaskAttempt,
  type TaskChangeNotice,
  type TaskError,
  type TaskInfo,
  type TaskPatch,
  type TaskProgress,
  type TaskState,
  type UpsertScheduleResult,
} from '@horae/storage';
import { pg } from './pg-driver.js';
import { Batcher } from './batcher.js';
import { ChangeListener } from './change-listener.js';
import { decodeChangeCursor, decodePageCursor, encodeChangeCursor, encodePageCursor } from './cursor.js';
import type { PgPool, PgPoolClient, PgQueryConfig, PgQueryResult, PgQueryable } from './pg-types.js';
import { PostgresHookOutbox } from './hook-outbox.js';
import { PostgresTaskSearch } from './task-search.js';
import { PostgresScheduleTable } from './postgres-schedule-store.js';
import { rowToAttempt, rowToTask } from './row-mapping.js';
import { migrate, quoteIdent } from './schema.js';
import { INDEXED_AGING_MS, buildStatements, type Statements } from './statements.js';
import { isRetryable, translateError } from './translate-error.js';

/** Options shared by both ways of opening a {@link PostgresRepository}. */
export interface PostgresRepositoryCommonOptions {
  /**
   * The PostgreSQL schema that holds Horae's tables; created when missing. Several schemas make several
   * independent repositories in one database. A plain identifier: letters, digits, `_`, at most 49 characters.
   * @defaultValue 'horae'
   */
  schema?: string;
  /**
   * Group commit: `markAsStarted`, `markAsDone` and `markAsFailed` (with a token) calls made in the same tick, or
   * while a statement of the same kind is in flight, are written by one statement each (each caller still gets its
   * own result and its own error). `claim` calls with the same owner and lease, and concurrent `claimDue` calls with
   * the same owner, lease, workIds and agingMs, made in the same tick, are merged the same way.
   * @defaultValue true
   */
  groupCommit?: boolean;
  /** The most tasks one grouped statement carries. @defaultValue 500 */
  maxBatchSize?: number;
  /**
   * How long `getUpdatedSince` waits, at most, for transactions older than a committed change to end before it
   * returns a page without that change (see the guide: the change cursor never steps over an open transaction).
   * @defaultValue 200
   */
  horizonWaitMs?: number;
  /**
   * The most bytes of UTF-8 JSON a task's or a schedule's param may take; a larger one is refused with
   * InvalidInputError before anything is written (and before it is serialized).
   * @defaultValue `DEFAULT_MAX_PARAM_BYTES` of `@horae/storage` (1 MiB)
   */
  maxParamBytes?: number;
}

/** Open a pool of your own from a connection string; `close()` ends it. */
export interface PostgresConnectionOptions extends PostgresRepositoryCommonOptions {
  /** A libpq-style URI, e.g. `postgres://user@host:5432/db`. */
  connectionString: string;
  /** The most connections the pool opens (the LISTEN connection is one more). @defaultValue 10 */
  poolSize?: number;
  /**
   * Whether a commit waits for its WAL to reach the disk (PostgreSQL's `synchronous_commit`, set on the
   * adapter's connections). `false` trades durability for speed: a crash of the *server* may lose the last
   * fraction of a second of commits (a lost claim puts the task back to Initialized; a lost markAsDone leaves it
   * Working until its lease expires, then it runs again). See the adapter guide. With a pool of yours, set it on
   * the pool or the role instead.
   * @defaultValue true (the server's setting is left alone)
   */
  synchronousCommit?: boolean;
}

/** Use a pool you opened (a `pg.Pool`); `close()` leaves it open. */
export interface PostgresPoolOptions extends PostgresRepositoryCommonOptions {
  /** The pool; with `subscribeChanges`, one of its connections is held for LISTEN. */
  pool: PgPool;
}

/** How to open a {@link PostgresRepository}. */
export type PostgresRepositoryOptions = PostgresConnectionOptions | PostgresPoolOptions;

/** The most rows one INSERT statement carries; larger batches are split within one transaction. */
const INSERT_CHUNK = 5_000;
/** How often a statement aborted by a deadlock or serialization failure is sent again. */
const MAX_RETRIES = 5;
/** Rows inserted by this client, since it last refreshed the planner's statistics, that call for a refresh. */
const ANALYZE_AFTER_ROWS = 1_000;
/** The least time between two statistics refreshes by one client. */
const ANALYZE_INTERVAL_MS = 10_000;
/** reclaimExpired's page size when none is given. */
const DEFAULT_RECLAIM_LIMIT = 1_000;

/**
 * The poison error's message around its count, from the contract's own {@link poisonTaskError}, so that the text the
 * reclaim statement writes is the contract's for every count: `<before><count><after>`.
 */
const POISON = ((): { name: string; code: string; before: string; after: string } => {
  const mark = 987_654_321;
  const error = poisonTaskError(mark);
  const [before = '', after = ''] = error.message.split(String(mark));
  return { name: error.name ?? 'PoisonTaskError', code: error.code ?? 'POISON_TASK', before, after };
})();

/** A write under a lease token: markAsStarted, markAsDone, or markAsFailed with a token (`error` then set). */
interface HeldItem {
  id: string;
  token: string;
  /** markAsFailed: the error, as stored (jsonb text). */
  error?: string;
}

/** Which write under a token a refused row was refused by: what the read after it tells apart. */
type HeldWrite = 'start' | 'end';

interface ClaimItem {
  id: string;
  owner: string;
  leaseMs: number;
  ifScheduledAt: Date | null;
}

interface ClaimDueItem {
  owner: string;
  leaseMs: number;
  limit: number;
  workIds: string[] | null;
  agingMs: number;
}

function assertString(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`${what} must be a non-empty string`);
}

function assertValidDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

/** The workIds filter of a claim of due tasks: null for every work, else the distinct ids, sorted. */
function checkWorkIds(workIds: unknown): string[] | null {
  if (workIds === undefined) return null;
  if (!Array.isArray(workIds) || workIds.some((w) => typeof w !== 'string')) throw new InvalidInputError('workIds must be an array of strings');
  return [...new Set(workIds as string[])].sort();
}

/** Keeps the fields of a TaskError, bounded, so that what is stored is what reads back. */
function boundedError(error: TaskError): TaskError {
  if (error === null || typeof error !== 'object' || typeof error.message !== 'string') {
    throw new InvalidInputError('error must be a TaskError with a string message');
  }
  const out: TaskError = { message: error.message.slice(0, MAX_ERROR_MESSAGE_LENGTH) };
  if (typeof error.name === 'string') out.name = error.name.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error.code === 'string') out.code = error.code.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof error.stack === 'string') out.stack = error.stack.slice(0, MAX_ERROR_STACK_LENGTH);
  return out;
}

/**
 * The NOTIFY channel of a schema: `horae_changes_<schema>` (case kept; at most 63 characters).
 *
 * @param schema - the unquoted schema name
 * @returns the channel name a LISTEN elsewhere (`LISTEN "horae_changes_horae"`) would use
 */
export function channelOf(schema: string): string {
  return `horae_changes_${schema}`;
}

/**
 * The Repository contract on PostgreSQL (15 and later; 13 is the least, for `xid8` and `pg_current_xact_id`).
 *
 * Every transition is one conditional `UPDATE … WHERE state = … [AND lease_token = …] RETURNING`, so the
 * database decides who wins; `claimDue` and `reclaimExpired` pick rows with `FOR UPDATE SKIP LOCKED`. Claims are
 * not attempts: `claimDue` claims ahead in the aged order, `markAsStarted` starts the run. Times (createdAt,
 * updatedAt, lease.until, the due and expiry checks of every claim) come from the database's clock. The change
 * cursor is exact under concurrent transactions (see the adapter guide). It also implements
 * {@link ChangeNotifier}: inserts, updates, cancels and releases NOTIFY the schema's channel in their transaction;
 * and {@link ScheduleStore}: recurring schedules are rows, each change a compare-and-set on their version.
 *
 * Tables are created and migrated on first use (or by {@link PostgresRepository.init}); several nodes
 * starting at once are serialized by an advisory lock.
 *
 * ### Examples
 * ```ts
 * import { PostgresRepository } from '@horae/repo-postgres';
 *
 * const repo = new PostgresRepository({ connectionString: 'postgres://postgres@127.0.0.1:5432/app' });
 * await repo.init();
 * const { task } = await repo.insert({ workId: 'email', param: { to: 'a@b.c' }, scheduledAt: new Date() });
 * // Claimed ahead: no attempt is spent until the run starts.
 * const [claimed] = await repo.claimDue({ owner: 'node-1', leaseMs: 30_000, limit: 1 });
 * if (claimed?.lease) {
 *   await repo.markAsStarted(claimed.id, claimed.lease.token);
 *   await repo.markAsDone(claimed.id, claimed.lease.token);
 * }
 * await repo.close();
 * ```
 */
export class PostgresRepository implements Repository, ChangeNotifier, ScheduleStore, WorkLimiter, HookOutboxProvider, TaskSearchProvider {
  /** The most bytes of UTF-8 JSON a param may take (the `maxParamBytes` option). */
  readonly maxParamBytes: number;
  readonly #limits: WriteLimits;
  readonly #pool: PgPool;
  readonly #ownsPool: boolean;
  readonly #schema: string;
  readonly #sql: Statements;
  readonly #names = new Map<string, string>();
  readonly #groupCommit: boolean;
  readonly #maxBatchSize: number;
  readonly #horizonWaitMs: number;
  readonly #listener: ChangeListener;
  readonly #startBatcher: Batcher<HeldItem, TaskInfo>;
  readonly #doneBatcher: Batcher<HeldItem, TaskInfo>;
  readonly #failBatcher: Batcher<HeldItem, TaskInfo>;
  readonly #claimOneBatcher: Batcher<ClaimItem, TaskInfo | null>;
  readonly #claimBatcher: Batcher<ClaimDueItem, TaskInfo[]>;
  readonly #schedules: PostgresScheduleTable;
  #hookOutbox: PostgresHookOutbox | undefined;
  #taskSearch: PostgresTaskSearch | undefined;
  #ready: Promise<void> | null = null;
  #closed = false;
  #insertedSinceAnalyze = 0;
  #lastAnalyzeAt = Number.NEGATIVE_INFINITY;
  #analyzing: Promise<void> | null = null;

  /**
   * Opens the repository; no connection is made until first use.
   *
   * @param options - a connection string (the adapter opens and closes a pool) or a pool of yours
   * @throws InvalidInputError when the schema name or an option is invalid
   */
  constructor(options: PostgresRepositoryOptions) {
    const schema = options.schema ?? 'horae';
    if (typeof schema !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,48}$/.test(schema)) {
      throw new InvalidInputError(`schema must be a plain identifier (letters, digits, _; at most 49 characters), got ${quoteInput(schema)}`);
    }
    this.#schema = schema;
    this.maxParamBytes = checkMaxParamBytes(options.maxParamBytes);
    this.#limits = { maxParamBytes: this.maxParamBytes };
    this.#groupCommit = options.groupCommit ?? true;
    this.#maxBatchSize = options.maxBatchSize ?? 500;
    validateLimit(this.#maxBatchSize);
    this.#horizonWaitMs = options.horizonWaitMs ?? 200;
    if (!Number.isFinite(this.#horizonWaitMs) || this.#horizonWaitMs < 0) throw new InvalidInputError('horizonWaitMs must be a number ≥ 0');
    const channel = channelOf(schema);
    this.#sql = buildStatements(quoteIdent(schema), channel);
    this.#schedules = new PostgresScheduleTable(quoteIdent(schema), (action, text, values) => this.#query(action, text, values), this.#limits);

    let connectListener: () => Promise<PgPoolClient>;
    if ('pool' in options && options.pool !== undefined) {
      this.#pool = options.pool;
      this.#ownsPool = false;
      const pool = options.pool;
      connectListener = () => pool.connect();
    } else {
      const { connectionString } = options as PostgresConnectionOptions;
      assertString(connectionString, 'connectionString');
      const poolSize = (options as PostgresConnectionOptions).poolSize ?? 10;
      validateLimit(poolSize);
      const synchronousCommit = (options as PostgresConnectionOptions).synchronousCommit ?? true;
      const pool = new pg.Pool({ connectionString, max: poolSize, ...(synchronousCommit ? {} : { options: '-c synchronous_commit=off' }) });
      // An idle connection the server drops is removed from the pool; without a listener the error would crash the process.
      pool.on('error', () => undefined);
      this.#pool = pool;
      this.#ownsPool = true;
      connectListener = async () => {
        const client = new pg.Client({ connectionString });
        client.on('error', () => undefined);
        await client.connect();
        return Object.assign(client, {
          release: () => {
            void client.end().catch(() => undefined);
          },
        });
      };
    }
    this.#listener = new ChangeListener({ connect: connectListener, channel });
    // The starts and ends of runs: one statement of each kind at a time, carrying every call made meanwhile.
    const held = (run: (items: readonly HeldItem[]) => Promise<(TaskInfo | Error)[]>): Batcher<HeldItem, TaskInfo> =>
      new Batcher<HeldItem, TaskInfo>({ run, identityOf: (item) => item.id, maxWeight: this.#maxBatchSize, holdWhileInFlight: true });
    this.#startBatcher = held((items) => this.#runHeld('start runs', this.#sql.startMany, 'start', items));
    this.#doneBatcher = held((items) => this.#runHeld('mark tasks done', this.#sql.doneMany, 'end', items));
    this.#failBatcher = held((items) => this.#runHeld('mark tasks failed', this.#sql.failMany, 'end', items));
    this.#claimOneBatcher = new Batcher<ClaimItem, TaskInfo | null>({
      run: (items) => this.#runClaims(items),
      groupOf: (item) => JSON.stringify([item.owner, item.leaseMs]),
      identityOf: (item) => item.id,
      maxWeight: this.#maxBatchSize,
    });
    this.#claimBatcher = new Batcher<ClaimDueItem, TaskInfo[]>({
      run: (items) => this.#runClaimDue(items),
      // String(): JSON has no Infinity.
      groupOf: (item) => JSON.stringify([item.owner, item.leaseMs, item.workIds, String(item.agingMs)]),
      weightOf: (item) => item.limit,
      maxWeight: this.#maxBatchSize,
    });
  }

  /** The schema that holds the tables. */
  get schema(): string {
    return this.#schema;
  }

  /**
   * Creates or migrates the tables now rather than on first use. Safe to call many times and from many nodes at
   * once.
   *
   * @throws SchemaVersionError when the database holds a newer schema than this version understands
   * @throws RepositoryError when the database cannot be reached
   */
  async init(): Promise<void> {
    if (this.#closed) throw new RepositoryError('the repository is closed');
    this.#ready ??= migrate(this.#pool, this.#schema).then(
      () => undefined,
      (error: unknown) => {
        this.#ready = null;
        throw error;
      },
    );
    await this.#ready;
  }

  /** {@inheritDoc @horae/storage!index.Repository#insert} */
  async insert(task: NewTask): Promise<InsertResult> {
    const [result] = await this.insertMany([task]);
    return result!;
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#insertMany}
   *
   * @implementation One `INSERT … SELECT FROM unnest(…)` per 5,000 tasks, in one transaction when there are more.
   */
  async insertMany(tasks: readonly NewTask[]): Promise<InsertResult[]> {
    const given: unknown = tasks;
    if (!Array.isArray(given)) throw new InvalidInputError('insertMany takes an array of tasks');
    const normalized = tasks.map((task) => normalizeNewTask(task, this.#limits));
    if (normalized.length === 0) return [];
    const rows = normalized.map((task) => ({ ...task, id: task.id ?? randomUUID(), param: JSON.stringify(task.param) }));
    await this.init();
    const results =
      rows.length <= INSERT_CHUNK
        ? await this.#insertRows(this.#pool, rows)
        : await this.#transaction('insert tasks', async (client) => {
            const all: InsertResult[] = [];
            for (let i = 0; i < rows.length; i += INSERT_CHUNK) all.push(...(await this.#insertRows(client, rows.slice(i, i + INSERT_CHUNK))));
            return all;
          });
    this.#maybeAnalyze(rows.length);
    return results;
  }

  /**
   * After a bulk insert, refreshes the planner's statistics in the background: autovacuum may take a minute to
   * notice, and until then a table that grew from nothing is planned as if it were empty (claimDue would sort the
   * whole due set instead of walking its index).
   */
  #maybeAnalyze(inserted: number): void {
    this.#insertedSinceAnalyze += inserted;
    if (this.#insertedSinceAnalyze < ANALYZE_AFTER_ROWS || this.#analyzing !== null || Date.now() - this.#lastAnalyzeAt < ANALYZE_INTERVAL_MS) return;
    this.#insertedSinceAnalyze = 0;
    this.#lastAnalyzeAt = Date.now();
    this.#analyzing = this.#pool
      .query({ text: this.#sql.analyze })
      .then(
        () => undefined,
        // Only an optimisation: autovacuum will do it later.
        () => undefined,
      )
      .finally(() => {
        this.#analyzing = null;
      });
  }

  async #insertRows(db: PgQueryable, rows: readonly (Omit<NormalizedNewTask, 'param'> & { id: string; param: string })[]): Promise<InsertResult[]> {
    const results = new Array<InsertResult | undefined>(rows.length);
    let todo = rows.map((_, i) => i);
    // A key's holder can end between our INSERT and our look-up; then the insert is simply tried again.
    for (let round = 0; todo.length > 0; round++) {
      if (round > MAX_RETRIES) throw new RepositoryError('could not insert tasks: their uniqueKeys kept changing hands');
      const batch = todo.map((i) => rows[i]!);
      const inserted = await this.#run(db, 'insert tasks', this.#sql.insertMany, [
        batch.map((r) => r.id),
        batch.map((r) => r.workId),
        batch.map((r) => r.param),
        batch.map((r) => r.scheduledAt),
        batch.map((r) => r.priority),
        batch.map((r) => r.maxAttempts),
        batch.map((r) => r.uniqueKey),
        batch.map((r) => r.kind),
        batch.map((r) => r.scheduleName),
      ]);
      const byId = new Map(inserted.rows.map((row) => [row.id as string, rowToTask(row)]));
      const missed: number[] = [];
      for (const i of todo) {
        const task = byId.get(rows[i]!.id);
        if (task !== undefined) results[i] = { task, created: true };
        else missed.push(i);
      }
      if (missed.length === 0) break;
      const keys = [...new Set(missed.map((i) => rows[i]!.uniqueKey).filter((k): k is string => k !== null))];
      const holders = await this.#run(db, 'look up unique keys', this.#sql.liveByKeys, [keys]);
      const byKey = new Map(holders.rows.map((row) => [row.unique_key as string, rowToTask(row)]));
      todo = [];
      for (const i of missed) {
        const key = rows[i]!.uniqueKey;
        const holder = key === null ? undefined : byKey.get(key);
        if (holder !== undefined) results[i] = { task: holder, created: false };
        else todo.push(i);
      }
    }
    return results as InsertResult[];
  }

  /** {@inheritDoc @horae/storage!index.Repository#getById} */
  async getById(id: string): Promise<TaskInfo> {
    assertString(id, 'id');
    const { rows } = await this.#query('read a task', this.#sql.getById, [id]);
    if (rows[0] === undefined) throw new TaskNotFoundError(id);
    return rowToTask(rows[0]);
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#getUpdatedSince}
   *
   * @implementation The cursor is (transaction id, sequence) of the last change returned. A change is returned only once
   * every transaction that started before the one that wrote it has ended, so a later-committing earlier
   * transaction is never stepped over. When a page stops short at such a change, this waits up to
   * `horizonWaitMs` for the older transactions to end; a transaction left open longer delays the changes after
   * it until it ends, and never loses them.
   */
  async getUpdatedSince(cursor: string | null, limit: number): Promise<ChangePage> {
    validateLimit(limit);
    const from = decodeChangeCursor(cursor);
    const deadline = Date.now() + this.#horizonWaitMs;
    for (;;) {
      const { rows } = await this.#query('read changes', this.#sql.changes, [from.xid, from.seq, limit]);
      const settled = rows.findIndex((row) => row.settled !== true);
      const ready = settled === -1 ? rows : rows.slice(0, settled);
      if (settled === -1 || Date.now() >= deadline) {
        const last = ready[ready.length - 1];
        return {
          tasks: ready.map(rowToTask),
          cursor: last === undefined ? (cursor ?? encodeChangeCursor(from)) : encodeChangeCursor({ xid: last.cursor_xid as string, seq: last.cursor_seq as string }),
        };
      }
      // Committed changes wait behind an older open transaction: give it a moment to end.
      const newest = rows[rows.length - 1]!.cursor_xid as string;
      await this.#awaitHorizon(newest, deadline);
    }
  }

  async #awaitHorizon(xid: string, deadline: number): Promise<void> {
    for (let delay = 1; Date.now() < deadline; delay = Math.min(delay * 2, 25)) {
      const { rows } = await this.#query('read the transaction horizon', this.#sql.horizonPassed, [xid]);
      if (rows[0]?.passed === true) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, Math.max(0, deadline - Date.now()))));
    }
  }

  /** {@inheritDoc @horae/storage!index.Repository#getCursor} */
  async getCursor(): Promise<string> {
    const { rows } = await this.#query('read the change horizon', this.#sql.horizon, []);
    // Every transaction that has not committed yet has an id at or above the horizon, so (horizon, 0) precedes
    // all of their changes; changes of ended transactions at or above it are seen again (at least once).
    return encodeChangeCursor({ xid: rows[0]!.horizon as string, seq: '0' });
  }

  /** {@inheritDoc @horae/storage!index.Repository#listDue} */
  async listDue(options: { before: Date; limit: number; after?: string | null }): Promise<ListPage> {
    assertValidDate(options?.before, 'before');
    validateLimit(options.limit);
    const after = decodePageCursor(options.after);
    const { rows } = await this.#query('list due tasks', this.#sql.listDue, [options.before, after?.at ?? null, after?.id ?? null, options.limit + 1]);
    const tasks = rows.slice(0, options.limit).map(rowToTask);
    const last = tasks[tasks.length - 1];
    return { tasks, next: rows.length > options.limit && last !== undefined ? encodePageCursor(last.scheduledAt, last.id) : null };
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#claim}
   *
   * @implementation One statement claims and starts the run and opens its record, its condition checking the state,
   * `ifScheduledAt` and the due time by `statement_timestamp()`. With group commit, claims with the same owner and
   * lease made in one tick are written by one statement (one round trip, one commit) whose per-row condition is the
   * same compare-and-set; each caller gets its own task, null, TaskNotDueError or TaskNotFoundError, told apart by
   * that same statement. Two claims of one id never share a statement, and the grouped statement locks its rows in
   * id order, so concurrent grouped claims from several nodes never deadlock. Without group commit a refused claim
   * reads the row once to tell null, not due and not found apart.
   */
  async claim(id: string, options: ClaimOptions & { ifScheduledAt?: Date }): Promise<TaskInfo | null> {
    assertString(id, 'id');
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    if (options.ifScheduledAt !== undefined) assertValidDate(options.ifScheduledAt, 'ifScheduledAt');
    if (this.#groupCommit) {
      await this.init();
      return this.#claimOneBatcher.add({ id, owner: options.owner, leaseMs: options.leaseMs, ifScheduledAt: options.ifScheduledAt ?? null });
    }
    const ifScheduledAt = options.ifScheduledAt ?? null;
    for (let attempt = 0; ; attempt++) {
      const { rows } = await this.#query('claim a task', this.#sql.claim, [id, options.owner, options.leaseMs, ifScheduledAt]);
      if (rows[0] !== undefined) return rowToTask(rows[0]);
      const refusal = await this.#query('read a task', this.#sql.claimRefusal, [id, ifScheduledAt]);
      const row = refusal.rows[0] as { claimable: boolean; due_in_ms: number | null } | undefined;
      if (row === undefined) throw new TaskNotFoundError(id);
      if (!row.claimable) return null;
      if (row.due_in_ms !== null) throw new TaskNotDueError(id, row.due_in_ms);
      // Claimable and due by now: it changed between the two statements (it became due, or came back to
      // Initialized). Claim again; a task that keeps changing hands is a lost race.
      if (attempt >= MAX_RETRIES) return null;
    }
  }

  /**
   * One grouped claim statement for `items` (same owner and lease, unique ids): each gets its task, null,
   * TaskNotDueError or TaskNotFoundError.
   */
  async #runClaims(items: readonly ClaimItem[]): Promise<(TaskInfo | null | Error)[]> {
    const first = items[0]!;
    const ids = items.map((item) => item.id);
    const { rows } = await this.#query('claim tasks', this.#sql.claimMany, [ids, first.owner, first.leaseMs, items.map((item) => item.ifScheduledAt)]);
    const found = new Map<string, TaskInfo | null | Error>();
    for (const row of rows) {
      const id = row.found as string;
      const dueInMs = row.due_in_ms as number | null;
      found.set(id, row.id !== null ? rowToTask(row) : dueInMs !== null ? new TaskNotDueError(id, dueInMs) : null);
    }
    return ids.map((id) => {
      const task = found.get(id);
      return task === undefined ? new TaskNotFoundError(id) : task;
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#claimDue}
   *
   * @implementation One statement picks the due rows by `statement_timestamp()` in the aged order with `FOR UPDATE
   * SKIP LOCKED` and claims them ahead. At the default agingMs it walks the index tasks_aged from its top and stops
   * after `limit` due rows; with agingMs Infinity it walks tasks_claim (priority, then due time); with any other
   * agingMs no index holds the order, and every due row (of the given works) is read and the first `limit` kept by
   * a top-N sort: O(due rows) per call. With group commit, concurrent calls with the same owner, lease, workIds and
   * agingMs made in one tick are answered by one statement; each caller receives its own tasks, never another's.
   */
  async claimDue(options: ClaimDueOptions): Promise<TaskInfo[]> {
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    validateLimit(options.limit);
    const agingMs = checkAgingMs(options.agingMs);
    const workIds = checkWorkIds(options.workIds);
    if (workIds?.length === 0) return [];
    const item: ClaimDueItem = { owner: options.owner, leaseMs: options.leaseMs, limit: options.limit, workIds, agingMs };
    if (!this.#groupCommit || options.limit >= this.#maxBatchSize) return (await this.#runClaimDue([item]))[0]!;
    await this.init();
    return this.#claimBatcher.add(item);
  }

  /** The claim-ahead statement of an agingMs, and its parameters after the four every claimDue takes. */
  #claimDueStatement(agingMs: number): { text: string; extra: unknown[] } {
    if (agingMs === INDEXED_AGING_MS) return { text: this.#sql.claimDueAged, extra: [] };
    if (agingMs === Number.POSITIVE_INFINITY) return { text: this.#sql.claimDueByPriority, extra: [] };
    return { text: this.#sql.claimDueAgedBy, extra: [agingMs] };
  }

  async #runClaimDue(items: readonly ClaimDueItem[]): Promise<TaskInfo[][]> {
    const first = items[0]!;
    const total = items.reduce((sum, item) => sum + item.limit, 0);
    const statement = this.#claimDueStatement(first.agingMs);
    const { rows } = await this.#failingUnclaimable(() => this.#query('claim due tasks', statement.text, [first.owner, first.leaseMs, total, first.workIds, ...statement.extra]));
    const tasks = rows.map(rowToTask);
    // Hand out in order: the first caller gets the highest-priority tasks, up to its limit, and so on.
    let offset = 0;
    return items.map((item) => {
      const mine = tasks.slice(offset, offset + item.limit);
      offset += item.limit;
      return mine;
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.WorkLimiter#claimWithinLimit}
   *
   * @implementation One transaction: it takes the advisory lock of the task's work (`pg_advisory_xact_lock` on the hashes
   * of the schema and the workId), then reads the task (its state, due time, and how long until it is due by the
   * database's clock) and counts the work's Working tasks (each statement of a READ COMMITTED transaction sees what
   * the previous lock holder committed), then claims and starts the run. Every limited claim of a work holds that
   * lock until it commits, so the limit is exact across clients; unrelated works do not wait. The checks come in the
   * contract's order: not claimable (null), then not due (TaskNotDueError), then the limit.
   */
  async claimWithinLimit(id: string, options: LimitedClaimOptions): Promise<LimitedClaim> {
    assertString(id, 'id');
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    validateMaxWorking(options.maxWorking);
    if (options.ifScheduledAt !== undefined) assertValidDate(options.ifScheduledAt, 'ifScheduledAt');
    const ifScheduledAt = options.ifScheduledAt?.getTime() ?? null;
    // A task's work never changes: read it before taking the lock, then read its state again under the lock.
    const first = await this.#query('read the work of a task', this.#sql.claimable, [id]);
    const workId = (first.rows[0] as { work_id: string } | undefined)?.work_id;
    if (workId === undefined) throw new TaskNotFoundError(id);
    return this.#transaction('claim a task within its work limit', async (client): Promise<LimitedClaim> => {
      await this.#run(client, 'lock a work', this.#sql.lockWorks, [this.#schema, [workId]]);
      const { rows } = await this.#run(client, 'read a task', this.#sql.claimable, [id]);
      const current = rows[0] as { state: string; scheduled_at: Date; due_in_ms: number | null } | undefined;
      if (current === undefined) throw new TaskNotFoundError(id);
      if (current.state !== 'Initialized' || (ifScheduledAt !== null && current.scheduled_at.getTime() !== ifScheduledAt)) return null;
      // Not due is a fact of the task, the limit one of the moment: the caller re-arms its timer either way.
      if (current.due_in_ms !== null) throw new TaskNotDueError(id, current.due_in_ms);
      const counted = await this.#run(client, 'count working tasks', this.#sql.countWorking, [[workId]]);
      const working = (counted.rows[0] as { n: number } | undefined)?.n ?? 0;
      if (working >= options.maxWorking) return { refused: 'limit' };
      const claimed = await this.#run(client, 'claim a task', this.#sql.claim, [id, options.owner, options.leaseMs, options.ifScheduledAt ?? null]);
      return claimed.rows[0] === undefined ? null : { task: rowToTask(claimed.rows[0]) };
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.WorkLimiter#claimDueWithinLimits}
   *
   * @implementation One transaction: the advisory locks of the limited works (in sorted order), their counts, then due
   * rows in the aged claim order `FOR UPDATE SKIP LOCKED` (through the same indexes as claimDue), leaving out the works
   * already full, at most one pass per limited work plus one; the rows picked are claimed ahead, unstarted. Not grouped
   * with other calls (group commit applies to the plain claimDue only).
   */
  async claimDueWithinLimits(options: LimitedClaimDueOptions): Promise<TaskInfo[]> {
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    validateLimit(options.limit);
    const limits = validateWorkLimits(options.workLimits);
    const agingMs = checkAgingMs(options.agingMs);
    const workIds = checkWorkIds(options.workIds);
    if (workIds?.length === 0) return [];
    const limited = [...limits.keys()].sort();
    const limit = options.limit;
    const select =
      agingMs === INDEXED_AGING_MS
        ? { text: this.#sql.selectDueLimitedAged, extra: [] }
        : agingMs === Number.POSITIVE_INFINITY
          ? { text: this.#sql.selectDueLimitedByPriority, extra: [] }
          : { text: this.#sql.selectDueLimitedAgedBy, extra: [agingMs] };
    await this.init();
    const claim = (): Promise<TaskInfo[]> => this.#transaction('claim due tasks within work limits', async (client) => {
      const free = new Map(limits);
      if (limited.length > 0) {
        await this.#run(client, 'lock works', this.#sql.lockWorks, [this.#schema, limited]);
        const counted = await this.#run(client, 'count working tasks', this.#sql.countWorking, [limited]);
        for (const row of counted.rows as { work_id: string; n: number }[]) free.set(row.work_id, (limits.get(row.work_id) ?? 0) - row.n);
      }
      const claimed: TaskInfo[] = [];
      // A pass that skips a row has just filled that row's work, which the next pass leaves out: at most one pass
      // per limited work, plus one. Rows are claimed as they are picked, so a later pass does not see them again.
      for (let pass = 0; pass <= limits.size && claimed.length < limit; pass++) {
        const { rows } = await this.#run(client, 'select due tasks', select.text, [workIds, fullWorks(free), limit - claimed.length, ...select.extra]);
        const candidates = (rows as { id: string; work_id: string }[]).map((row) => ({ id: row.id, workId: row.work_id }));
        const taken = pickWithinLimits(candidates, free, limit - claimed.length);
        if (taken.length > 0) {
          const result = await this.#run(client, 'claim due tasks', this.#sql.claimIds, [options.owner, options.leaseMs, taken]);
          // In claim order: the order the rows were picked in.
          const byId = new Map(result.rows.map((row) => [row.id as string, rowToTask(row)]));
          for (const id of taken) {
            const task = byId.get(id);
            if (task !== undefined) claimed.push(task);
          }
        }
        if (taken.length === candidates.length) break;
      }
      return claimed;
    });
    return this.#failingUnclaimable(claim);
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#markAsStarted}
   *
   * @implementation One statement starts the run and opens its record (`UPDATE … WHERE … AND NOT lease_started` with an
   * `INSERT` into task_attempts in a CTE). With group commit, the calls made in one tick, or while a start is in
   * flight, are written by one `UPDATE … FROM unnest($ids, $tokens)` whose rows are each fenced on their own; the rows
   * that did not come back are told apart (started already, lease lost, not found) by one read of them.
   */
  async markAsStarted(id: string, token: string): Promise<TaskInfo> {
    assertString(id, 'id');
    if (this.#groupCommit) {
      await this.init();
      return this.#startBatcher.add({ id, token });
    }
    const { rows } = await this.#query('start a run', this.#sql.start, [id, token]);
    if (rows[0] !== undefined) return rowToTask(rows[0]);
    const [outcome] = await this.#refusals([{ id, token }], 'start');
    if (outcome instanceof Error) throw outcome;
    return outcome!;
  }

  /** {@inheritDoc @horae/storage!index.Repository#renewLease} */
  async renewLease(id: string, token: string, leaseMs: number): Promise<TaskInfo> {
    assertString(id, 'id');
    validateLeaseMs(leaseMs);
    const { rows } = await this.#query('renew a lease', this.#sql.renew, [id, token, leaseMs]);
    if (rows[0] !== undefined) return rowToTask(rows[0]);
    throw await this.#leaseFailure(id);
  }

  /** {@inheritDoc @horae/storage!index.Repository#release} */
  async release(id: string, token: string, options: ReleaseOptions): Promise<TaskInfo> {
    assertString(id, 'id');
    assertValidDate(options?.runAt, 'runAt');
    const error = options.error === undefined ? null : JSON.stringify(boundedError(options.error));
    const { rows } = await this.#query('release a task', this.#sql.release, [id, token, options.runAt, error, options.refundAttempt === true]);
    if (rows[0] !== undefined) return rowToTask(rows[0]);
    throw await this.#leaseFailure(id);
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#markAsDone}
   *
   * @implementation With group commit, calls made in one tick, or while a Done is in flight, are written by one
   * `UPDATE … FROM unnest($ids, $tokens)` whose per-row condition is the same compare-and-set (Working under the
   * token, run started), closing each run's record in a CTE; each caller gets its own task or error, the refused rows
   * told apart (unstarted, lease lost, not found) by one read of them.
   */
  async markAsDone(id: string, token: string): Promise<TaskInfo> {
    assertString(id, 'id');
    if (!this.#groupCommit) {
      const { rows } = await this.#query('mark a task done', this.#sql.done, [id, token]);
      if (rows[0] !== undefined) return rowToTask(rows[0]);
      throw await this.#endRefusal(id, token);
    }
    await this.init();
    return this.#doneBatcher.add({ id, token });
  }

  /**
   * One grouped write under lease tokens (`startMany`, `doneMany` or `failMany`) for `items` (unique ids): each gets
   * its task, or the reason its row was refused.
   */
  async #runHeld(action: string, text: string, write: HeldWrite, items: readonly HeldItem[]): Promise<(TaskInfo | Error)[]> {
    // A token that is not a string holds nothing: NULL matches no row, and the read after tells LeaseLostError.
    const values: unknown[] = [items.map((item) => item.id), items.map((item) => (typeof item.token === 'string' ? item.token : null))];
    if (text === this.#sql.failMany) values.push(items.map((item) => item.error ?? null));
    const { rows } = await this.#query(action, text, values);
    const byId = new Map(rows.map((row) => [row.id as string, rowToTask(row)]));
    const refused = items.filter((item) => !byId.has(item.id));
    const outcomes = refused.length === 0 ? [] : await this.#refusals(refused, write);
    const why = new Map(refused.map((item, i) => [item.id, outcomes[i]!]));
    return items.map((item) => byId.get(item.id) ?? why.get(item.id)!);
  }

  /** Why the end of a run under `token` changed nothing: TaskNotFoundError, LeaseLostError or InvalidStateError. */
  async #endRefusal(id: string, token: string): Promise<Error> {
    const [outcome] = await this.#refusals([{ id, token }], 'end');
    return outcome instanceof Error ? outcome : new LeaseLostError(id);
  }

  /**
   * Why writes under lease tokens changed nothing, from one read of their rows: TaskNotFoundError when the task is
   * gone; LeaseLostError when it is not Working under the token; under the token, a start finds the run started
   * already (the task, unchanged: a retried start that had landed) or its lease expired (LeaseLostError), and an end
   * finds it unstarted (InvalidStateError:
   * the one condition of an end left when the token holds).
   */
  async #refusals(items: readonly HeldItem[], write: HeldWrite): Promise<(TaskInfo | Error)[]> {
    const { rows } = await this.#query('read tasks', this.#sql.getMany, [items.map((item) => item.id)]);
    const byId = new Map(rows.map((row) => [row.id as string, rowToTask(row)]));
    return items.map(({ id, token }) => {
      const task = byId.get(id);
      if (task === undefined) return new TaskNotFoundError(id);
      if (task.state !== 'Working' || task.lease?.token !== token) return new LeaseLostError(id);
      // Under the token and unstarted, a start was refused for the one condition left: its lease had expired.
      if (write === 'start') return task.lease.started ? task : leaseExpiredBeforeStart(id);
      return new InvalidStateError(id, 'Working, claimed ahead with its run not started', 'end a run');
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#markAsFailed}
   *
   * @implementation With a token and group commit, grouped as markAsDone is (one `UPDATE … FROM unnest($ids, $tokens,
   * $errors)`); without a token, one conditional write out of Initialized.
   */
  async markAsFailed(id: string, error: TaskError, token?: string): Promise<TaskInfo> {
    assertString(id, 'id');
    const stored = JSON.stringify(boundedError(error));
    if (token !== undefined) {
        if (this.#groupCommit) {
        await this.init();
        return this.#failBatcher.add({ id, token, error: stored });
      }
      const { rows } = await this.#query('mark a task failed', this.#sql.failWorking, [id, stored, token]);
      if (rows[0] !== undefined) return rowToTask(rows[0]);
      throw await this.#endRefusal(id, token);
    }
    const { rows } = await this.#query('mark a task failed', this.#sql.failInitialized, [id, stored]);
    if (rows[0] !== undefined) return rowToTask(rows[0]);
    const current = await this.getById(id);
    throw new InvalidStateError(id, current.state, 'fail');
  }

  /** {@inheritDoc @horae/storage!index.Repository#markAsCancelled} */
  async markAsCancelled(id: string, options?: { token?: string; reason?: string }): Promise<{ task: TaskInfo; cancelled: boolean }> {
    assertString(id, 'id');
    const token = options?.token;
    const { rows } =
      token === undefined
        ? await this.#query('cancel a task', this.#sql.cancel, [id])
        : await this.#query('cancel a task', this.#sql.cancelWorking, [id, token]);
    if (rows[0] !== undefined) return { task: rowToTask(rows[0]), cancelled: true };
    const current = await this.getById(id);
    if (token !== undefined) throw new LeaseLostError(id);
    // Not live, so terminal (the conditional write above covers both live states).
    return { task: current, cancelled: false };
  }

  /** {@inheritDoc @horae/storage!index.Repository#update} */
  async update(id: string, patch: TaskPatch): Promise<TaskInfo> {
    assertString(id, 'id');
    validatePatch(patch, this.#limits);
    const hasParam = patch.param !== undefined;
    const { rows } = await this.#query('update a task', this.#sql.update, [
      id,
      patch.scheduledAt ?? null,
      hasParam,
      hasParam ? JSON.stringify(patch.param) : null,
      patch.priority ?? null,
    ]);
    if (rows[0] !== undefined) return rowToTask(rows[0]);
    const current = await this.getById(id);
    throw new InvalidStateError(id, current.state, 'update');
  }

  /** {@inheritDoc @horae/storage!index.Repository#setProgress} */
  async setProgress(id: string, token: string, progress: Omit<TaskProgress, 'at'>): Promise<void> {
    assertString(id, 'id');
    if (progress === null || typeof progress !== 'object') throw new InvalidInputError('progress must be an object');
    const { completed, total, message } = progress;
    if (typeof completed !== 'number' || !Number.isFinite(completed) || typeof total !== 'number' || !Number.isFinite(total)) {
      throw new InvalidInputError('progress.completed and progress.total must be finite numbers');
    }
    if (message !== undefined && typeof message !== 'string') throw new InvalidInputError('progress.message must be a string');
    const stored = JSON.stringify(message === undefined ? { completed, total } : { completed, total, message });
    const { rows } = await this.#query('record progress', this.#sql.progress, [id, token, stored, message ?? null, MAX_CHECK_INS_PER_ATTEMPT]);
    if (rows.length === 0) throw await this.#leaseFailure(id);
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#reclaimExpired}
   *
   * @implementation One statement picks the expired leases by `statement_timestamp()` with `FOR UPDATE SKIP LOCKED`
   * and decides each row in its `SET`: a started run as before (its record closed `lease-expired`); a claim ahead
   * counts one more unstarted claim and fails as a poison task at `maxUnstartedClaims`.
   */
  async reclaimExpired(options?: ReclaimOptions): Promise<TaskInfo[]> {
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new InvalidInputError('reclaimExpired takes options { limit?, maxUnstartedClaims? }');
    const limit = options?.limit ?? DEFAULT_RECLAIM_LIMIT;
    validateLimit(limit);
    const maxUnstartedClaims = checkMaxUnstartedClaims(options?.maxUnstartedClaims);
    const { rows } = await this.#query('reclaim expired leases', this.#sql.reclaim, [limit, maxUnstartedClaims, POISON.name, POISON.code, POISON.before, POISON.after]);
    return rows.map(rowToTask);
  }

  /** {@inheritDoc @horae/storage!index.Repository#list} */
  async list(options: ListOptions = {}): Promise<ListPage> {
    const limit = options.limit ?? 100;
    validateLimit(limit);
    if (options.state !== undefined && !ALL_TASK_STATES.includes(options.state)) throw new InvalidInputError(`state must be one of ${ALL_TASK_STATES.join(', ')}`);
    if (options.workId !== undefined) assertString(options.workId, 'workId');
    const after = decodePageCursor(options.after);
    const { rows } = await this.#query('list tasks', this.#sql.list, [options.state ?? null, options.workId ?? null, after?.at ?? null, after?.id ?? null, limit + 1]);
    const tasks = rows.slice(0, limit).map(rowToTask);
    const last = tasks[tasks.length - 1];
    return { tasks, next: rows.length > limit && last !== undefined ? encodePageCursor(last.createdAt, last.id) : null };
  }

  /** {@inheritDoc @horae/storage!index.Repository#countByState} */
  async countByState(): Promise<Record<TaskState, number>> {
    const { rows } = await this.#query('count tasks', this.#sql.countByState, []);
    const counts = Object.fromEntries(ALL_TASK_STATES.map((state) => [state, 0])) as Record<TaskState, number>;
    for (const row of rows) counts[row.state as TaskState] = Number(row.n);
    return counts;
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#listAttempts}
   *
   * @implementation One read of `task_attempts` (keyed `(task_id, run)`) joined to the task, so an unknown id and a task
   * that never ran are told apart in one round trip. A task migrated from schema version 2 has no record of the
   * runs it made before the upgrade; its history starts with its next claim, as run 1.
   */
  async listAttempts(taskId: string): Promise<TaskAttempt[]> {
    assertString(taskId, 'taskId');
    const { rows } = await this.#query('list the attempts of a task', this.#sql.listAttempts, [taskId]);
    if (rows.length === 0) throw new TaskNotFoundError(taskId);
    return rows.filter((row) => row.task_id !== null).map(rowToAttempt);
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#deleteTerminalBefore}
   *
   * @implementation The attempt records go with their tasks in the same statement (an `AFTER DELETE` trigger on tasks).
   */
  async deleteTerminalBefore(before: Date): Promise<number> {
    assertValidDate(before, 'before');
    const { rowCount } = await this.#query('delete ended tasks', this.#sql.deleteTerminal, [before]);
    return rowCount ?? 0;
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#upsertSchedule} */
  upsertSchedule(definition: ScheduleDefinition): Promise<UpsertScheduleResult> {
    return this.#schedules.upsert(definition);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#getSchedule} */
  getSchedule(name: string): Promise<Schedule> {
    return this.#schedules.get(name);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#listSchedules} */
  listSchedules(options?: ListSchedulesOptions): Promise<Schedule[]> {
    return this.#schedules.list(options);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#setSchedulePaused} */
  setSchedulePaused(name: string, paused: boolean): Promise<Schedule> {
    return this.#schedules.setPaused(name, paused);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#removeSchedule} */
  removeSchedule(name: string): Promise<void> {
    return this.#schedules.remove(name);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#pullScheduleForward} */
  pullScheduleForward(name: string, withinMs: number): Promise<Schedule> {
    return this.#schedules.pullForward(name, withinMs);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#advanceSchedule} */
  advanceSchedule(name: string, advance: ScheduleAdvance): Promise<Schedule | null> {
    return this.#schedules.advance(name, advance);
  }

  /**
   * {@inheritDoc @horae/storage!index.ChangeNotifier#subscribeChanges}
   *
   * @implementation One dedicated connection LISTENs while anyone is subscribed (with a pool of yours, it is checked out
   * of that pool); when it drops, it reconnects with backoff (100 ms doubling to 5 s). Notices sent while it is
   * down are lost: they are hints, and the next sync reads the change anyway.
   * @throws RepositoryError when the LISTEN connection cannot be opened
   */
  async subscribeChanges(listener: (notice: TaskChangeNotice) => void): Promise<() => Promise<void>> {
    if (typeof listener !== 'function') throw new InvalidInputError('listener must be a function');
    await this.init();
    return this.#listener.subscribe(listener);
  }

  /**
   * The status hook outbox in this schema (`hook_outbox`), on the same pool.
   *
   * @returns the same {@link PostgresHookOutbox} on every call
   */
  hookOutbox(): HookOutbox {
    this.#hookOutbox ??= new PostgresHookOutbox(quoteIdent(this.#schema), (action, text, values) => this.#query(action, text, values));
    return this.#hookOutbox;
  }

  /**
   * Operator search over this schema's `tasks` (see {@link PostgresTaskSearch} for which index serves which filter;
   * a param match reads the params of the rows the other filters select), on the same pool.
   *
   * @returns the same {@link PostgresTaskSearch} on every call
   */
  taskSearch(): TaskSearch {
    this.#taskSearch ??= new PostgresTaskSearch(quoteIdent(this.#schema), (action, text, values) => this.#query(action, text, values));
    return this.#taskSearch;
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#close}
   *
   * @implementation Waits for grouped writes already queued, then ends the LISTEN connection and, when the adapter
   * opened it from a connection string, the pool. Later calls throw RepositoryError.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.allSettled([
      this.#startBatcher.drain(),
      this.#doneBatcher.drain(),
      this.#failBatcher.drain(),
      this.#claimOneBatcher.drain(),
      this.#claimBatcher.drain(),
      this.#analyzing,
    ]);
    this.#closed = true;
    await this.#listener.close();
    if (this.#ownsPool) await this.#pool.end();
  }

  /** The error for a write refused under a token: TaskNotFoundError when the task is gone, else LeaseLostError. */
  /**
   * Runs a claim of due tasks; when it fails because a due row's workId is too long for the index of Working rows
   * (SQLSTATE 54000: a row stored before the key limits), fails those rows and claims once more. Such a task can
   * never be claimed, and without this every claim that reaches it in claim order would fail, blocking the tasks
   * behind it.
   */
  async #failingUnclaimable<T>(claim: () => Promise<T>): Promise<T> {
    try {
      return await claim();
    } catch (error) {
      if (!(error instanceof ValueRefusedError) || error.driverCode !== '54000') throw error;
      const { rows } = await this.#query('find unclaimable tasks', `SELECT id, length(work_id) AS n FROM ${quoteIdent(this.#schema)}.tasks WHERE state = 'Initialized' AND length(work_id) > $1`, [
        MAX_WORK_ID_LENGTH,
      ]);
      if (rows.length === 0) throw error;
      for (const row of rows as { id: string; n: number }[]) {
        const message = `its workId is ${row.n} characters long, over the limit of ${MAX_WORK_ID_LENGTH}: PostgreSQL cannot index it in a Working row, so no node can ever claim the task (stored before the limit)`;
        await this.markAsFailed(row.id, { message, name: 'ValueRefusedError', code: 'INVALID_INPUT' }).catch(() => undefined);
      }
      return claim();
    }
  }

  async #leaseFailure(id: string): Promise<Error> {
    const { rows } = await this.#query('read a task', this.#sql.existing, [[id]]);
    return rows.length === 0 ? new TaskNotFoundError(id) : new LeaseLostError(id);
  }

  async #query(action: string, text: string, values: unknown[]): Promise<PgQueryResult> {
    await this.init();
    return this.#run(this.#pool, action, text, values);
  }

  /** Runs one statement, sending it again when a deadlock or serialization failure aborted it. */
  async #run(db: PgQueryable, action: string, text: string, values: unknown[]): Promise<PgQueryResult> {
    if (this.#closed) throw new RepositoryError('the repository is closed');
    const config: PgQueryConfig = { text, values, name: this.#nameOf(text) };
    for (let attempt = 0; ; attempt++) {
      try {
        return await db.query(config);
      } catch (error) {
        if (attempt < MAX_RETRIES && isRetryable(error) && db === this.#pool) continue;
        throw translateError(error, action);
      }
    }
  }

  async #transaction<T>(action: string, body: (client: PgQueryable) => Promise<T>): Promise<T> {
    let client: PgPoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw translateError(error, action);
    }
    let broken = false;
    try {
      await client.query({ text: 'BEGIN' });
      const result = await body(client);
      await client.query({ text: 'COMMIT' });
      return result;
    } catch (error) {
      try {
        await client.query({ text: 'ROLLBACK' });
      } catch {
        broken = true;
      }
      throw translateError(error, action);
    } finally {
      client.release(broken);
    }
  }

  /** A prepared-statement name per SQL text: the driver prepares it once per connection. */
  #nameOf(text: string): string {
    let name = this.#names.get(text);
    if (name === undefined) {
      name = `horae_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
      this.#names.set(text, name);
    }
    return name;
  }
}
