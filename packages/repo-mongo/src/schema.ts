/**
 * The collections and indexes the adapter needs, as versioned migrations. MongoDB has no DDL: a
 * "migration" creates indexes and seeds documents; every step is idempotent, so nodes that start together
 * may all run it.
 */
import type { Document, IndexDescription } from 'mongodb';
import { SchemaVersionError, TaskState } from '@horae/storage';
import { CHANGE_LOG_ID } from './change-log.js';
import { CLAIM_ORDER_EXPRESSION } from './queries.js';

/** The name of the unique index over the uniqueKey of live (non-terminal) tasks. */
export const UNIQUE_KEY_INDEX = 'horae_unique_key_live';

/** The `_id` of the document that records the schema version in the meta collection. */
export const SCHEMA_ID = 'schema';

/**
 * The live uniqueKey index. Its partial filter uses equality on the boolean `live` and `$type`, which every
 * server since 3.2 accepts in a partial filter (`$in` on `state` needs 6.0), so one live task at most holds
 * a key, and terminal tasks keep their key without blocking new ones.
 */
export const UNIQUE_KEY_INDEX_SPEC: IndexDescription = {
  key: { uniqueKey: 1 },
  name: UNIQUE_KEY_INDEX,
  unique: true,
  partialFilterExpression: { live: true, uniqueKey: { $type: 'string' } },
};

/** The indexes schema version 1 created, as it shipped. */
const VERSION_1_INDEXES: readonly IndexDescription[] = [
  UNIQUE_KEY_INDEX_SPEC,
  { key: { seq: 1, _id: 1 }, name: 'horae_changes' },
  { key: { state: 1, priority: -1, scheduledAt: 1, createdAt: 1, _id: 1 }, name: 'horae_claim_due' },
  { key: { state: 1, scheduledAt: 1, _id: 1 }, name: 'horae_list_due' },
  { key: { state: 1, 'lease.until': 1 }, name: 'horae_lease_expiry' },
  { key: { createdAt: 1, _id: 1 }, name: 'horae_list' },
  { key: { state: 1, createdAt: 1, _id: 1 }, name: 'horae_list_state' },
  { key: { workId: 1, createdAt: 1, _id: 1 }, name: 'horae_list_work' },
  { key: { state: 1, updatedAt: 1 }, name: 'horae_terminal_age' },
];

/**
 * The index of `claimDue` with the default aging (schema version 3): Initialized tasks by their stored aged key,
 * highest first, then due time, age and id, as the claim sorts them. (`horae_claim_due`, by priority, stays for
 * `agingMs: Infinity`.)
 */
export const CLAIM_AGED_INDEX_SPEC: IndexDescription = {
  key: { state: 1, claimOrder: -1, scheduledAt: 1, createdAt: 1, _id: 1 },
  name: 'horae_claim_aged',
};

/** Every index of the tasks collection, each named so that a rerun is a no-op. */
export const TASK_INDEXES: readonly IndexDescription[] = [...VERSION_1_INDEXES, CLAIM_AGED_INDEX_SPEC];

/** The indexes of the hook outbox (schema version 4): the claim's walk in seq order, its per-task check, and purges. */
export const HOOK_OUTBOX_INDEXES: readonly IndexDescription[] = [
  { key: { state: 1, hook: 1, seq: 1 }, name: 'horae_hook_outbox_pending' },
  { key: { state: 1, hook: 1, taskId: 1, seq: 1 }, name: 'horae_hook_outbox_task' },
  { key: { state: 1, updatedAt: 1 }, name: 'horae_hook_outbox_state' },
  { key: { seq: 1 }, name: 'horae_hook_outbox_seq' },
];

/**
 * The slice of the driver the migrations use.
 *
 * @inline
 */
export interface SchemaTarget {
  /** The tasks collection. */
  tasks: {
    createIndexes(indexes: IndexDescription[]): Promise<string[]>;
    updateMany(filter: Document, update: Document | Document[]): Promise<unknown>;
  };
  /** The hook outbox collection (schema version 4). */
  hookOutbox: {
    createIndexes(indexes: IndexDescription[]): Promise<string[]>;
  };
  /** The meta collection (schema version, change counter). */
  meta: {
    findOne(filter: Document): Promise<Document | null>;
    updateOne(filter: Document, update: Document, options?: { upsert?: boolean }): Promise<unknown>;
  };
}

/** One migration: brings the schema from `version - 1` to `version`. */
export interface Migration {
  /** The version after this step. */
  version: number;
  /** What it does, for logs. */
  description: string;
  /** Runs the step; must be idempotent. */
  up(target: SchemaTarget): Promise<void>;
}

/** The migrations, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'task indexes and the change counter',
    async up(target) {
      await target.tasks.createIndexes([...VERSION_1_INDEXES]);
      // $setOnInsert: a counter that exists already keeps its sequence.
      await target.meta.updateOne({ _id: CHANGE_LOG_ID }, { $setOnInsert: { seq: 0, pending: [] } }, { upsert: true });
    },
  },
  {
    version: 2,
    description: 'task kinds, schedule names and the embedded execution history',
    async up(target) {
      // Existing tasks were all scheduled at a time and ran with no record kept: kind 'scheduled', no
      // schedule, an empty history. Each update touches only documents that lack the field, so a rerun (or
      // a node still on version 1 inserting meanwhile) is harmless; reads default the same way. Neither
      // updatedAt nor seq changes: what a reader sees of these tasks is the same before and after.
      await target.tasks.updateMany({ kind: { $exists: false } }, { $set: { kind: 'scheduled' } });
      await target.tasks.updateMany({ scheduleName: { $exists: false } }, { $set: { scheduleName: null } });
      await target.tasks.updateMany({ attempts: { $exists: false } }, { $set: { attempts: [] } });
    },
  },
  {
    version: 3,
    description: 'claims counted apart from attempts, and the aged claim order',
    async up(target) {
      // Before claims ahead, every claim started its run: the claims so far are the attempts so far, none went
      // unstarted, and every lease held is a started run. Each update touches only documents that lack the field,
      // and none moves updatedAt or seq (a reader sees the same TaskInfo: reads default the same way), so a rerun,
      // or a node of version 2 still writing meanwhile, is harmless. A pipeline update (MongoDB 4.2, as every
      // transition of the adapter) copies `attempt` and computes the key from each document's own fields.
      await target.tasks.updateMany({ claims: { $exists: false } }, [{ $set: { claims: '$attempt' } }]);
      await target.tasks.updateMany({ unstartedClaims: { $exists: false } }, { $set: { unstartedClaims: 0 } });
      // The $type guard: a lease that is null has no field to set (and no run).
      await target.tasks.updateMany({ state: TaskState.Working, lease: { $type: 'object' }, 'lease.started': { $exists: false } }, { $set: { 'lease.started': true } });
      await target.tasks.updateMany({ claimOrder: { $exists: false } }, [{ $set: { claimOrder: CLAIM_ORDER_EXPRESSION } }]);
      // After the keys exist, so the index is built once over them.
      await target.tasks.createIndexes([CLAIM_AGED_INDEX_SPEC]);
    },
  },
  {
    version: 4,
    description: 'the status hook outbox',
    async up(target) {
      // A new collection: its indexes (named, so a rerun is a no-op) and nothing else; its seq counter is created by
      // the first enqueue.
      await target.hookOutbox.createIndexes([...HOOK_OUTBOX_INDEXES]);
    },
  },
];

/** The newest schema version this adapter knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/**
 * Brings the schema up to {@link SCHEMA_VERSION}.
 *
 * @param target - the collections
 * @returns the version now stored
 * @throws SchemaVersionError when the database holds a newer version than this adapter knows
 */
export async function migrate(target: SchemaTarget): Promise<number> {
  const stored = await target.meta.findOne({ _id: SCHEMA_ID });
  const found = typeof stored?.version === 'number' ? stored.version : 0;
  if (found > SCHEMA_VERSION) throw new SchemaVersionError(found, SCHEMA_VERSION);
  for (const migration of MIGRATIONS) {
    if (migration.version <= found) continue;
    await migration.up(target);
    // $max: of nodes migrating together, none moves the version back.
    await target.meta.updateOne({ _id: SCHEMA_ID }, { $max: { version: migration.version } }, { upsert: true });
  }
  return Math.max(found, SCHEMA_VERSION);
}
