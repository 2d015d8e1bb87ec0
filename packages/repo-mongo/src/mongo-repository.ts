import { randomUUID } from 'node:crypto';
import type { Collection, Document, MongoClientOptions } from 'mongodb';
import { InvalidInputError, quoteInput } from '@horae/core';
import {
  checkAgingMs,
  checkMaxUnstartedClaims,
  ALL_TASK_STATES,
  InvalidStateError,
  LeaseLostError,
  leaseExpiredBeforeStart,
  RepositoryError,
  TaskNotDueError,
  TaskNotFoundError,
  TaskState,
  isTerminal,
  normalizeNewTask,
  validateLeaseMs,
  validateLimit,
  validatePatch,
  validateOwner,
  checkMaxParamBytes,
} from '@horae/storage';
import type {
  WriteLimits,
  HookOutbox,
  HookOutboxProvider,
  TaskSearch,
  TaskSearchProvider,
  ChangePage,
  ClaimDueOptions,
  ClaimOptions,
  InsertResult,
  ListOptions,
  ListPage,
  NewTask,
  NormalizedNewTask,
  ReclaimOptions,
  ReleaseOptions,
  Repository,
  TaskAttempt,
  TaskError,
  TaskInfo,
  TaskPatch,
  TaskProgress,
} from '@horae/storage';
import { ChangeLog } from './change-log.js';
import { MongoHookOutbox, type HookOutboxDocument } from './hook-outbox.js';
import { MongoTaskSearch } from './task-search.js';
import { decodeChangeCursor, decodePageCursor, encodeChangeCursor, encodePageCursor } from './cursors.js';
import type { PagePosition } from './cursors.js';
import type { MongoClientLike, MongoDbLike } from './driver.js';
import { MongoClient } from './mongodb-driver.js';
import {
  assertNonEmptyString,
  assertProgress,
  assertTaskError,
  assertTaskState,
  assertValidDate,
  boundMessage,
} from './input.js';
import {
  CHANGES_SORT,
  LIST_DUE_SORT,
  LIST_SORT,
  TASK_PROJECTION,
  agedCandidatesPipeline,
  cancellableFilter,
  changesFilter,
  claimAheadPipeline,
  claimDueSort,
  claimFilter,
  claimPipeline,
  claimRefusalPipeline,
  dueFilter,
  endPipeline,
  expiredFilter,
  insertFilter,
  insertPipeline,
  leaseFilter,
  listDueFilter,
  listFilter,
  patchPipeline,
  progressPipeline,
  reclaimPipeline,
  releasePipeline,
  renewPipeline,
  resequencePipeline,
  startPipeline,
  startedLeaseFilter,
  stateFilter,
  terminalBeforeFilter,
  unstartedLeaseFilter,
} from './queries.js';
import type { ChangeTicket, ClaimRefusal } from './queries.js';
import { UNIQUE_KEY_INDEX, migrate } from './schema.js';
import { sanitizeTaskError, toTaskAttempt, toTaskInfo } from './task-document.js';
import type { MetaDocument, TaskDocument } from './task-document.js';
import { duplicateKeyIndex, isDuplicateKeyError, translateMongoError } from './translate-error.js';

/** Options every way of opening a {@link MongoRepository} shares. */
export interface MongoRepositoryBaseOptions {
  /**
   * Prefix of the two collections the repository uses: `<prefix>tasks` and `<prefix>meta`.
   * @defaultValue `'horae_'`
   */
  collectionPrefix?: string;
  /**
   * How long a write may stamp the change sequence it took. A write that the server evaluates later (a
   * stalled connection) stamps none and is sequenced again, so a slow write is never lost to readers.
   * @defaultValue 10000
   */
  changeTicketTtlMs?: number;
  /**
   * How long an unreleased change ticket (its writer died or lost the connection) holds change readers
   * back. Must exceed `changeTicketTtlMs` by more than the longest time a write takes to become visible to
   * readers (replication lag included, when readers use majority read concern).
   * @defaultValue 60000
   */
  changeTicketExpiryMs?: number;
  /**
   * The most bytes of UTF-8 JSON a task's param may take; a larger one is refused with InvalidInputError before
   * anything is written (and before it is serialized). MongoDB refuses documents over 16 MiB whatever this says.
   * @defaultValue `DEFAULT_MAX_PARAM_BYTES` of `@horae/storage` (1 MiB)
   */
  maxParamBytes?: number;
}

/**
 * How to reach the database: an opened `Db`, a `MongoClient` and a database name, or a connection string
 * the repository opens itself (and closes in {@link MongoRepository.close}).
 */
export type MongoRepositoryOptions = MongoRepositoryBaseOptions &
  (
    | {
        /** An opened database handle; the repository never closes it. */
        db: MongoDbLike;
      }
    | {
        /** A client; the repository never closes it. */
        client: MongoClientLike;
        /** The database. @defaultValue the database of the client's connection string */
        dbName?: string;
      }
    | {
        /** A connection string (`mongodb://…` or `mongodb+srv://…`); the repository opens and closes its client. */
        uri: string;
        /** The database. @defaultValue the database of the connection string, else `test` (the driver's default) */
        dbName?: string;
        /** Options for the client it opens. */
        clientOptions?: MongoClientOptions;
      }
  );

/** How many late writes one change read sequences again. */
const HEAL_BATCH = 100;
/** How many tasks a batch write (claimDue, reclaimExpired) changes under one change ticket. */
const TICKET_BATCH = 100;
/** How many times a write that lost a race with a concurrent change of the same task is tried again. */
const RACE_ROUNDS = 5;

interface WriteOptions {
  upsert?: boolean;
  sort?: Document;
}

/**
 * A {@link Repository} on MongoDB through the official `mongodb` driver.
 *
 * Every transition is one `findOneAndUpdate` whose filter holds the expected state (and, out of Working,
 * the lease token), so the server decides who wins: of concurrent claims of one task exactly one matches.
 * Every time it keeps (createdAt, updatedAt, lease.until, progress.at) and every due or expiry check comes
 * from the server's `$$NOW`, never from the node's clock. Params are stored as JSON text, so keys such as
 * `$where` or `a.b` round-trip intact, and every caller's value in an update pipeline is a `$literal`.
 *
 * **Execution history.** Each task's attempt records are an array embedded in its document, changed by the
 * same `findOneAndUpdate` as the transition they record (a claim opens one, the end of the run closes it),
 * so the history can never disagree with the state, and it is deleted with the task.
 *
 * **The change cursor is exact.** Every write takes a sequence number from a counter document and records
 * it as pending in the same atomic update; it stamps the number on the task and releases it when done.
 * `getUpdatedSince` reads only up to the watermark (just below the lowest pending number), so a write that
 * took 7 and commits after the write that took 8 is still read: no reader passes 7 while it is pending.
 * A writer that dies leaves its number pending for `changeTicketExpiryMs` at most; a write the server runs
 * after its number's deadline (`changeTicketTtlMs`) stamps none and is numbered again by the writer or by
 * the next reader, so no late write lands behind a reader. Ordering and expiry use the server's clock only.
 *
 * - Standalone server: exact as stated; a crash of the server may lose writes it acknowledged before its
 *   journal flushed, unless writes use `j: true` (`?journal=true` in the connection string).
 * - Replica set: use `w: 'majority'` (the default since MongoDB 5.0) and `readConcern: 'majority'` so that
 *   a failover cannot roll back numbers a reader already passed; `changeTicketExpiryMs` must exceed the
 *   replication lag. Reads go to the primary (the default read preference).
 * - Sharded cluster: works (the counter lives on one shard); throughput of writes is bounded by that one
 *   counter document.
 * - The counter is one hot document: every write pays two extra round trips (take, release) on it.
 *
 * Indexes are created by {@link MongoRepository.init}, which every method awaits on first use; call it
 * yourself to fail fast at start-up.
 *
 * ### Examples
 * ```ts
 * import { MongoClient } from 'mongodb';
 * import { MongoRepository } from '@horae/repo-mongo';
 *
 * const client = new MongoClient('mongodb://localhost:27017/?replicaSet=rs0');
 * const repository = new MongoRepository({ client, dbName: 'app' });
 * await repository.init();
 * ```
 */
export class MongoRepository implements Repository, HookOutboxProvider, TaskSearchProvider {
  /** The most bytes of UTF-8 JSON a param may take (the `maxParamBytes` option). */
  readonly maxParamBytes: number;
  readonly #limits: WriteLimits;
  readonly #tasks: Collection<TaskDocument>;
  readonly #meta: Collection<MetaDocument>;
  readonly #hookOutboxDocs: Collection<HookOutboxDocument>;
  #hookOutbox: MongoHookOutbox | undefined;
  #taskSearch: MongoTaskSearch | undefined;
  readonly #changes: ChangeLog;
  readonly #ownClient: MongoClient | null;
  #ready: Promise<void> | null = null;

  /**
   * @param options - where the database is, and the collection prefix
   * @throws InvalidInputError on missing or contradictory options
   */
  constructor(options: MongoRepositoryOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidInputError('MongoRepository needs options: { db }, { client, dbName } or { uri }');
    const prefix = options.collectionPrefix ?? 'horae_';
    if (typeof prefix !== 'string') throw new InvalidInputError('collectionPrefix must be a string');
    const ttlMs = options.changeTicketTtlMs ?? 10_000;
    const expiryMs = options.changeTicketExpiryMs ?? 60_000;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) throw new InvalidInputError(`changeTicketTtlMs must be a positive integer, got ${String(ttlMs)}`);
    if (!Number.isSafeInteger(expiryMs) || expiryMs <= ttlMs) throw new InvalidInputError(`changeTicketExpiryMs must be an integer greater than changeTicketTtlMs (${ttlMs}), got ${String(expiryMs)}`);
    this.maxParamBytes = checkMaxParamBytes(options.maxParamBytes);
    this.#limits = { maxParamBytes: this.maxParamBytes };

    let db: MongoDbLike;
    let ownClient: MongoClient | null = null;
    if ('db' in options && options.db !== undefined) {
      db = options.db;
    } else if ('client' in options && options.client !== undefined) {
      db = options.client.db(options.dbName);
    } else if ('uri' in options && typeof options.uri === 'string') {
      // The driver connects on the first operation, so a constructor never blocks or throws on the network.
      ownClient = new MongoClient(options.uri, options.clientOptions);
      db = ownClient.db(options.dbName);
    } else {
      throw new InvalidInputError('MongoRepository needs one of { db }, { client, dbName } or { uri }');
    }
    this.#ownClient = ownClient;
    this.#tasks = db.collection<TaskDocument>(`${prefix}tasks`);
    this.#meta = db.collection<MetaDocument>(`${prefix}meta`);
    this.#hookOutboxDocs = db.collection<HookOutboxDocument>(`${prefix}hook_outbox`);
    this.#changes = new ChangeLog(this.#meta, ttlMs, expiryMs);
  }

  /**
   * Creates the indexes and the change counter (idempotent; many nodes may run it at once). Every method
   * awaits it on first use; a failed run is tried again by the next call.
   *
   * @throws SchemaVersionError when the database was set up by a newer Horae
   * @throws RepositoryError when the database cannot be reached
   */
  init(): Promise<void> {
    if (this.#ready === null) {
      const ready = migrate({ tasks: this.#tasks, meta: this.#meta, hookOutbox: this.#hookOutboxDocs }).then(
        () => undefined,
        (error: unknown) => {
          this.#ready = null;
          throw translateMongoError(error, 'set up its collections');
        },
      );
      this.#ready = ready;
    }
    return this.#ready;
  }

  /**
   * The status hook outbox (`<prefix>hook_outbox`), on the same database.
   *
   * @returns the same {@link MongoHookOutbox} on every call
   */
  hookOutbox(): HookOutbox {
    this.#hookOutbox ??= new MongoHookOutbox(
      this.#hookOutboxDocs,
      this.#meta,
      (operation, body) => this.#run(operation, body),
    );
    return this.#hookOutbox;
  }

  /**
   * Operator search over the tasks collection (see {@link MongoTaskSearch}: a param match is checked on the documents
   * the other filters select, since the param is stored as JSON text, with a bound per page and per count).
   *
   * @returns the same {@link MongoTaskSearch} on every call
   */
  taskSearch(): TaskSearch {
    this.#taskSearch ??= new MongoTaskSearch(this.#tasks, (operation, body) => this.#run(operation, body));
    return this.#taskSearch;
  }

  async #run<T>(operation: string, body: () => Promise<T>): Promise<T> {
    await this.init();
    try {
      return await body();
    } catch (error) {
      throw translateMongoError(error, operation);
    }
  }

  /** One conditional write of one task, under `ticket` or a ticket of its own; a late write is numbered again. */
  async #writeOne(filter: Document, build: (ticket: ChangeTicket) => Document[], options: WriteOptions = {}, ticket?: ChangeTicket): Promise<TaskDocument | null> {
    const apply = (t: ChangeTicket): Promise<TaskDocument | null> =>
      this.#tasks.findOneAndUpdate(filter, build(t), {
        returnDocument: 'after',
        upsert: options.upsert ?? false,
        projection: TASK_PROJECTION,
        ...(options.sort ? { sort: options.sort } : {}),
      });
    const doc = ticket === undefined ? await this.#changes.withTicket(apply) : await apply(ticket);
    if (doc !== null && doc.seq === null) await this.#resequence([doc._id]);
    return doc;
  }

  async #resequence(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#changes.withTicket((ticket) => this.#tasks.updateMany({ _id: { $in: ids }, seq: null }, resequencePipeline(ticket)));
  }

  async #load(id: string): Promise<TaskDocument> {
    const doc = await this.#tasks.findOne({ _id: id }, { projection: TASK_PROJECTION });
    if (doc === null) throw new TaskNotFoundError(id);
    return doc;
  }

  /** {@inheritDoc @horae/storage!index.Repository#insert} */
  async insert(task: NewTask): Promise<InsertResult> {
    const normalized = normalizeNewTask(task, this.#limits);
    return this.#run('insert a task', () => this.#insertOne(normalized, normalized.id ?? randomUUID()));
  }

  async #insertOne(task: NormalizedNewTask, id: string, ticket?: ChangeTicket): Promise<InsertResult> {
    for (let round = 1; ; round++) {
      try {
        const doc = await this.#writeOne(insertFilter(id), (t) => insertPipeline(task, t), { upsert: true }, ticket);
        if (doc === null) throw new RepositoryError('MongoDB returned no document after inserting a task');
        return { task: toTaskInfo(doc), created: true };
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
        const index = duplicateKeyIndex(error, UNIQUE_KEY_INDEX);
        if (task.uniqueKey !== null) {
          const holder = await this.#tasks.findOne({ uniqueKey: { $eq: task.uniqueKey, $type: 'string' }, live: true }, { projection: TASK_PROJECTION });
          if (holder !== null) return { task: toTaskInfo(holder), created: false };
          // The holder ended between our insert and our read: the key is free again.
          if (index !== 'id' && round < RACE_ROUNDS) continue;
        }
        if (index === 'uniqueKey') throw new RepositoryError(`the uniqueKey ${quoteInput(task.uniqueKey)} kept changing hands; try again`, { cause: error });
        throw new InvalidInputError(`the id ${quoteInput(id)} is taken`, { cause: error });
      }
    }
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#insertMany}
   * @implementation Without a transaction, a driver failure midway leaves the tasks before it inserted; every
   * input is validated, and every given id checked free, before the first write.
   */
  async insertMany(tasks: readonly NewTask[]): Promise<InsertResult[]> {
    const input: unknown = tasks;
    if (!Array.isArray(input)) throw new InvalidInputError('insertMany takes an array of tasks');
    const normalized = tasks.map((task) => normalizeNewTask(task, this.#limits));
    const ids = normalized.map((task) => task.id ?? randomUUID());
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) throw new InvalidInputError(`the id ${quoteInput(id)} appears twice in one insertMany`);
      seen.add(id);
    }
    if (normalized.length === 0) return [];
    return this.#run('insert tasks', async () => {
      const given = normalized.flatMap((task) => (task.id === undefined ? [] : [task.id]));
      if (given.length > 0) {
        const taken = await this.#tasks.find({ _id: { $in: given } }, { projection: { _id: 1 } }).limit(1).toArray();
        if (taken[0] !== undefined) throw new InvalidInputError(`the id ${quoteInput(taken[0]._id)} is taken`);
      }
      const results: InsertResult[] = [];
      for (let from = 0; from < normalized.length; from += TICKET_BATCH) {
        await this.#changes.withTicket(async (ticket) => {
          for (let i = from; i < Math.min(from + TICKET_BATCH, normalized.length); i++) {
            results.push(await this.#insertOne(normalized[i]!, ids[i]!, ticket));
          }
        });
      }
      return results;
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#getById} */
  async getById(id: string): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    return this.#run(`read task ${quoteInput(id)}`, async () => toTaskInfo(await this.#load(id)));
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#getUpdatedSince}
   * @implementation Reads up to the watermark of the change log (see the class remarks); first numbers again any
   * write that ran past its ticket's deadline, so it is read now rather than lost.
   */
  async getUpdatedSince(cursor: string | null, limit: number): Promise<ChangePage> {
    validateLimit(limit);
    const from = decodeChangeCursor(cursor);
    const unchanged = cursor ?? encodeChangeCursor(from);
    return this.#run('read changed tasks', async () => {
      const late = await this.#tasks.find({ seq: null }, { projection: { _id: 1 } }).limit(HEAL_BATCH).toArray();
      await this.#resequence(late.map((doc) => String(doc._id)));
      const watermark = await this.#changes.watermark();
      const docs = await this.#tasks.find(changesFilter(from, watermark), { projection: TASK_PROJECTION }).sort(CHANGES_SORT).limit(limit).toArray();
      const last = docs.at(-1);
      if (last === undefined || last.seq === null) return { tasks: [], cursor: unchanged };
      return { tasks: docs.map(toTaskInfo), cursor: encodeChangeCursor({ seq: last.seq, id: last._id }) };
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#getCursor} */
  async getCursor(): Promise<string> {
    return this.#run('read the change cursor', async () => encodeChangeCursor({ seq: await this.#changes.watermark(), id: null }));
  }

  /** {@inheritDoc @horae/storage!index.Repository#listDue} */
  async listDue(options: { before: Date; limit: number; after?: string | null }): Promise<ListPage> {
    assertValidDate(options?.before, 'before');
    validateLimit(options.limit);
    const after = options.after === undefined || options.after === null ? null : decodePageCursor(options.after);
    return this.#run('list due tasks', async () => {
      const docs = await this.#tasks.find(listDueFilter(options.before, after), { projection: TASK_PROJECTION }).sort(LIST_DUE_SORT).limit(options.limit + 1).toArray();
      return page(docs, options.limit, (doc) => ({ at: doc.scheduledAt, id: doc._id }));
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#claim}
   * @implementation The write's filter holds the due check (`scheduledAt ≤ $$NOW`), so a task not due by the
   * server's clock matches nothing and nothing is written. Only a miss costs one more read, an aggregation so that
   * it carries the server's `$$NOW`, to tell why: no task (TaskNotFoundError), not Initialized or rescheduled
   * (null), or not due (TaskNotDueError with the server's `dueInMs`). A task that the read finds claimable (it
   * became due, or Initialized again, between the write and the read) is claimed again.
   */
  async claim(id: string, options: ClaimOptions & { ifScheduledAt?: Date }): Promise<TaskInfo | null> {
    assertNonEmptyString(id, 'id');
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    if (options.ifScheduledAt !== undefined) assertValidDate(options.ifScheduledAt, 'ifScheduledAt');
    return this.#run(`claim task ${quoteInput(id)}`, async () => {
      for (let round = 1; round <= RACE_ROUNDS; round++) {
        const token = randomUUID();
        const doc = await this.#writeOne(claimFilter(id, options.ifScheduledAt), (t) => claimPipeline(options.owner, token, options.leaseMs, t));
        if (doc !== null) return toTaskInfo(doc);
        const [seen] = await this.#tasks.aggregate<ClaimRefusal>(claimRefusalPipeline(id)).toArray();
        if (seen === undefined) throw new TaskNotFoundError(id);
        // In the contract's order: a task that is not Initialized, or was rescheduled, is null whether due or not.
        if (seen.state !== TaskState.Initialized) return null;
        if (options.ifScheduledAt !== undefined && !(seen.scheduledAt instanceof Date && seen.scheduledAt.getTime() === options.ifScheduledAt.getTime())) return null;
        const dueInMs = Number(seen.dueInMs);
        if (dueInMs > 0) throw new TaskNotDueError(id, dueInMs);
        // Due and Initialized now: it became so after the write was evaluated. Claim again.
      }
      throw new RepositoryError(`task ${quoteInput(id)} kept changing while being claimed; try again`);
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#claimDue}
   * @implementation Claims ahead, one `findOneAndUpdate` a task: the server re-checks the filter (Initialized, due
   * by `$$NOW`) on the document it updates, so two callers never take one task. With the default `agingMs` the
   * write sorts on the aged key every task stores (`claimOrder`, index `horae_claim_aged`), with `Infinity` on the
   * priority (index `horae_claim_due`). Any other aging has no stored key: an aggregation first computes the key of
   * every due task and picks the ids in order (a sort in memory over all due tasks; see the MongoDB guide), then
   * each id is claimed by its own conditional write.
   */
  async claimDue(options: ClaimDueOptions): Promise<TaskInfo[]> {
    validateOwner(options?.owner);
    validateLeaseMs(options.leaseMs);
    validateLimit(options.limit);
    const agingMs = checkAgingMs(options.agingMs);
    if (options.workIds !== undefined) {
      const workIds: unknown = options.workIds;
      if (!Array.isArray(workIds)) throw new InvalidInputError('workIds must be an array of strings');
      options.workIds.forEach((workId, i) => assertNonEmptyString(workId, `workIds[${i}]`));
      if (options.workIds.length === 0) return [];
    }
    const sort = claimDueSort(agingMs);
    return this.#run('claim due tasks', () => (sort === null ? this.#claimDuePicked(options, agingMs) : this.#claimDueSorted(options, sort)));
  }

  /** claimDue when an index holds the order: each write takes the first due task in `sort`. */
  async #claimDueSorted(options: ClaimDueOptions, sort: Document): Promise<TaskInfo[]> {
    const claimed: TaskInfo[] = [];
    let exhausted = false;
    while (!exhausted && claimed.length < options.limit) {
      await this.#changes.withTicket(async (ticket) => {
        for (let n = 0; n < TICKET_BATCH && claimed.length < options.limit; n++) {
          const token = randomUUID();
          const doc = await this.#writeOne(dueFilter(options.workIds), (t) => claimAheadPipeline(options.owner, token, options.leaseMs, t), { sort }, ticket);
          if (doc === null) {
            exhausted = true;
            return;
          }
          claimed.push(toTaskInfo(doc));
        }
      });
    }
    return claimed;
  }

  /** claimDue for an aging no document stores: pick the ids in order with an aggregation, then claim each. */
  async #claimDuePicked(options: ClaimDueOptions, agingMs: number): Promise<TaskInfo[]> {
    const claimed: TaskInfo[] = [];
    // Rounds in which every picked task went to another caller first; bounded so that a storm of racers cannot
    // keep one call looping (it returns what it has, as a claim of fewer than `limit` tasks may).
    let lostRounds = 0;
    while (claimed.length < options.limit && lostRounds < RACE_ROUNDS) {
      const picked = await this.#tasks.aggregate<{ _id: string }>(agedCandidatesPipeline(options.workIds, agingMs, options.limit - claimed.length)).toArray();
      if (picked.length === 0) break;
      const before = claimed.length;
      for (let from = 0; from < picked.length; from += TICKET_BATCH) {
        await this.#changes.withTicket(async (ticket) => {
          for (const { _id: id } of picked.slice(from, from + TICKET_BATCH)) {
            const token = randomUUID();
            // The filter re-checks Initialized and due: a task another caller took since the pick is skipped.
            const doc = await this.#writeOne({ ...dueFilter(options.workIds), _id: id }, (t) => claimAheadPipeline(options.owner, token, options.leaseMs, t), {}, ticket);
            if (doc !== null) claimed.push(toTaskInfo(doc));
          }
        });
      }
      lostRounds = claimed.length === before ? lostRounds + 1 : 0;
    }
    return claimed;
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#markAsStarted}
   * @implementation One `findOneAndUpdate` filtered on the token and `lease.started: false`; on a miss one read
   * tells a start that had already landed (returned unchanged) from a lost lease. Calls made together are written
   * one by one, each fenced on its own.
   */
  async markAsStarted(id: string, token: string): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    return this.#run(`start the run of task ${quoteInput(id)}`, async () => {
      // A token that is not a string can hold no lease; it must not reach the filter either.
      if (typeof token !== 'string') {
        await this.#load(id);
        throw new LeaseLostError(id);
      }
      const doc = await this.#writeOne(unstartedLeaseFilter(id, token), startPipeline);
      if (doc !== null) return toTaskInfo(doc);
      const current = toTaskInfo(await this.#load(id));
      if (current.state !== TaskState.Working || current.lease?.token !== token) throw new LeaseLostError(id);
      // Under the token: started already (a start that had landed), or unstarted with its lease expired.
      if (current.lease.started) return current;
      throw leaseExpiredBeforeStart(id);
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#renewLease} */
  async renewLease(id: string, token: string, leaseMs: number): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    validateLeaseMs(leaseMs);
    return this.#run(`renew the lease of task ${quoteInput(id)}`, () => this.#fenced(id, token, (t) => renewPipeline(leaseMs, t)));
  }

  /** {@inheritDoc @horae/storage!index.Repository#release} */
  async release(id: string, token: string, options: ReleaseOptions): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    assertValidDate(options?.runAt, 'runAt');
    if (options.error !== undefined) assertTaskError(options.error);
    const error = options.error === undefined ? undefined : sanitizeTaskError(options.error);
    return this.#run(`release task ${quoteInput(id)}`, () => this.#fenced(id, token, (t) => releasePipeline(options.runAt, error, options.refundAttempt === true, t)));
  }

  /** {@inheritDoc @horae/storage!index.Repository#markAsDone} */
  async markAsDone(id: string, token: string): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    return this.#run(`mark task ${quoteInput(id)} done`, () => this.#ended(id, token, 'mark as done', (t) => endPipeline(TaskState.Done, undefined, t, { outcome: 'succeeded', error: null })));
  }

  /** A write that needs the task Working under `token`; a miss is LeaseLostError (or TaskNotFoundError). */
  async #fenced(id: string, token: string, build: (ticket: ChangeTicket) => Document[]): Promise<TaskInfo> {
    // A token that is not a string can hold no lease; it must not reach the filter either.
    if (typeof token !== 'string') {
      await this.#load(id);
      throw new LeaseLostError(id);
    }
    const doc = await this.#writeOne(leaseFilter(id, token), build);
    if (doc !== null) return toTaskInfo(doc);
    await this.#load(id);
    throw new LeaseLostError(id);
  }

  /**
   * A write that ends a run: it needs the task Working under `token` with its run started. A miss is
   * InvalidStateError when the token holds a claim ahead whose run never started (there is no run to end; nothing
   * is written), else LeaseLostError (or TaskNotFoundError).
   */
  async #ended(id: string, token: string, action: string, build: (ticket: ChangeTicket) => Document[]): Promise<TaskInfo> {
    if (typeof token !== 'string') {
      await this.#load(id);
      throw new LeaseLostError(id);
    }
    const doc = await this.#writeOne(startedLeaseFilter(id, token), build);
    if (doc !== null) return toTaskInfo(doc);
    const current = await this.#load(id);
    // A lease never becomes unstarted again under one token, so this read is no stale view of a task that matched.
    if (current.state === TaskState.Working && current.lease?.token === token && current.lease.started === false) {
      throw new InvalidStateError(id, current.state, `${action} (its run has not started)`);
    }
    throw new LeaseLostError(id);
  }

  /** {@inheritDoc @horae/storage!index.Repository#markAsFailed} */
  async markAsFailed(id: string, error: TaskError, token?: string): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    assertTaskError(error);
    const stored = sanitizeTaskError(error);
    if (token !== undefined) {
      return this.#run(`mark task ${quoteInput(id)} failed`, () => this.#ended(id, token, 'mark as failed', (t) => endPipeline(TaskState.Failed, stored, t, { outcome: 'failed', error: stored })));
    }
    return this.#run(`mark task ${quoteInput(id)} failed`, async () => {
      // Out of Initialized no run happened: no attempt record.
      const doc = await this.#writeOne(stateFilter(id, TaskState.Initialized), (t) => endPipeline(TaskState.Failed, stored, t));
      if (doc !== null) return toTaskInfo(doc);
      const current = await this.#load(id);
      throw new InvalidStateError(id, current.state, 'fail');
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#markAsCancelled}
   * @implementation A `reason` is kept as the task's `lastError` (`code: 'CANCELLED'`). A task already terminal
   * is returned with `cancelled: false` whether or not a token is given.
   */
  async markAsCancelled(id: string, options?: { token?: string; reason?: string }): Promise<{ task: TaskInfo; cancelled: boolean }> {
    assertNonEmptyString(id, 'id');
    const token = options?.token;
    if (token !== undefined) assertNonEmptyString(token, 'token');
    const reason = options?.reason;
    if (reason !== undefined && typeof reason !== 'string') throw new InvalidInputError('reason must be a string');
    const error = reason === undefined ? undefined : sanitizeTaskError({ message: reason, name: 'TaskCancelledError', code: 'CANCELLED' });
    return this.#run(`cancel task ${quoteInput(id)}`, async () => {
      for (let round = 1; round <= RACE_ROUNDS; round++) {
        const filter = token === undefined ? cancellableFilter(id) : leaseFilter(id, token);
        // The record closes only when the task was Working (the pipeline reads the state before the write).
        const doc = await this.#writeOne(filter, (t) => endPipeline(TaskState.Cancelled, error, t, { outcome: 'cancelled', error: null }));
        if (doc !== null) return { task: toTaskInfo(doc), cancelled: true };
        const current = await this.#load(id);
        if (isTerminal(current.state)) return { task: toTaskInfo(current), cancelled: false };
        if (token !== undefined) throw new LeaseLostError(id);
        // Neither terminal nor matched: it changed between the write and the read; try again.
      }
      throw new RepositoryError(`task ${quoteInput(id)} kept changing while being cancelled; try again`);
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#update} */
  async update(id: string, patch: TaskPatch): Promise<TaskInfo> {
    assertNonEmptyString(id, 'id');
    validatePatch(patch, this.#limits);
    return this.#run(`update task ${quoteInput(id)}`, async () => {
      const doc = await this.#writeOne(stateFilter(id, TaskState.Initialized), (t) => patchPipeline(patch, t));
      if (doc !== null) return toTaskInfo(doc);
      const current = await this.#load(id);
      throw new InvalidStateError(id, current.state, 'update');
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#setProgress}
   * @throws TaskNotFoundError when no task has the id
   */
  async setProgress(id: string, token: string, progress: Omit<TaskProgress, 'at'>): Promise<void> {
    assertNonEmptyString(id, 'id');
    assertProgress(progress);
    const message = boundMessage(progress.message);
    const given = message === undefined ? { completed: progress.completed, total: progress.total } : { completed: progress.completed, total: progress.total, message };
    await this.#run(`record the progress of task ${quoteInput(id)}`, () => this.#fenced(id, token, (t) => progressPipeline(given, t)));
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#reclaimExpired}
   * @implementation One `findOneAndUpdate` a task, oldest lease end first; its pipeline tells a started run from a
   * claim ahead by `lease.started`, and builds the poison error, with its count, on the server.
   */
  async reclaimExpired(options?: ReclaimOptions): Promise<TaskInfo[]> {
    const limit = options?.limit;
    if (limit !== undefined) validateLimit(limit);
    const maxUnstartedClaims = checkMaxUnstartedClaims(options?.maxUnstartedClaims);
    return this.#run('reclaim expired leases', async () => {
      const reclaimed: TaskInfo[] = [];
      let exhausted = false;
      while (!exhausted && (limit === undefined || reclaimed.length < limit)) {
        await this.#changes.withTicket(async (ticket) => {
          for (let n = 0; n < TICKET_BATCH && (limit === undefined || reclaimed.length < limit); n++) {
            const doc = await this.#writeOne(expiredFilter(), (t) => reclaimPipeline(maxUnstartedClaims, t), { sort: { 'lease.until': 1, _id: 1 } }, ticket);
            if (doc === null) {
              exhausted = true;
              return;
            }
            reclaimed.push(toTaskInfo(doc));
          }
        });
      }
      return reclaimed;
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#list} */
  async list(options: ListOptions = {}): Promise<ListPage> {
    if (options.state !== undefined) assertTaskState(options.state);
    if (options.workId !== undefined) assertNonEmptyString(options.workId, 'workId');
    const limit = options.limit ?? 100;
    validateLimit(limit);
    const after = options.after === undefined || options.after === null ? null : decodePageCursor(options.after);
    return this.#run('list tasks', async () => {
      const docs = await this.#tasks.find(listFilter(options, after), { projection: TASK_PROJECTION }).sort(LIST_SORT).limit(limit + 1).toArray();
      return page(docs, limit, (doc) => ({ at: doc.createdAt, id: doc._id }));
    });
  }

  /** {@inheritDoc @horae/storage!index.Repository#countByState} */
  async countByState(): Promise<Record<TaskState, number>> {
    return this.#run('count tasks', async () => {
      const rows = await this.#tasks.aggregate<{ _id: unknown; count: number }>([{ $group: { _id: '$state', count: { $sum: 1 } } }]).toArray();
      const counts = Object.fromEntries(ALL_TASK_STATES.map((state) => [state, 0])) as Record<TaskState, number>;
      for (const row of rows) if (ALL_TASK_STATES.includes(row._id as TaskState)) counts[row._id as TaskState] = row.count;
      return counts;
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#listAttempts}
   * @implementation The records are embedded in the task's document and read by its `_id`; a task keeps its
   * latest 40 records (`MAX_ATTEMPTS_KEPT`; run numbers keep counting). A task written before schema
   * version 2 has no records of its runs before the upgrade.
   */
  async listAttempts(taskId: string): Promise<TaskAttempt[]> {
    assertNonEmptyString(taskId, 'taskId');
    return this.#run(`list the attempts of task ${quoteInput(taskId)}`, async () => {
      const doc = await this.#tasks.findOne({ _id: taskId }, { projection: { attempts: 1 } });
      if (doc === null) throw new TaskNotFoundError(taskId);
      return (doc.attempts ?? []).map((attempt) => toTaskAttempt(taskId, attempt));
    });
  }

  /**
   * {@inheritDoc @horae/storage!index.Repository#deleteTerminalBefore}
   * @implementation The attempt records live inside each task's document, so they go with it in the same delete.
   */
  async deleteTerminalBefore(before: Date): Promise<number> {
    assertValidDate(before, 'before');
    return this.#run('delete ended tasks', async () => (await this.#tasks.deleteMany(terminalBeforeFilter(before))).deletedCount);
  }

  /** {@inheritDoc @horae/storage!index.Repository#close} */
  async close(): Promise<void> {
    if (this.#ownClient === null) return;
    try {
      await this.#ownClient.close();
    } catch (error) {
      throw translateMongoError(error, 'close its client');
    }
  }
}

/** Cuts a list read with `limit + 1` rows into a page and its `next` cursor. */
function page(docs: TaskDocument[], limit: number, position: (doc: TaskDocument) => PagePosition): ListPage {
  const rows = docs.slice(0, limit);
  const last = rows.at(-1);
  return { tasks: rows.map(toTaskInfo), next: docs.length > limit && last !== undefined ? encodePageCursor(position(last)) : null };
}
