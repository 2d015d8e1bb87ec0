import { describe, expect, it } from 'vitest';
import type { Document, IndexDescription } from 'mongodb';
import { SchemaVersionError } from '@horae/storage';
import { CLAIM_AGED_INDEX_SPEC, HOOK_OUTBOX_INDEXES, MIGRATIONS, SCHEMA_VERSION, TASK_INDEXES, UNIQUE_KEY_INDEX, UNIQUE_KEY_INDEX_SPEC, migrate } from '../src/schema.js';
import { AGED_DUE_SORT, CLAIM_ORDER_EXPRESSION, PRIORITY_DUE_SORT } from '../src/queries.js';
import type { SchemaTarget } from '../src/schema.js';

/** An in-memory stand-in that records what migrate asks for; it checks migrate's own logic, not MongoDB. */
function recordingTarget(
  storedVersion: number | null,
): SchemaTarget & { created: IndexDescription[][]; outboxCreated: IndexDescription[][]; updates: Document[]; taskUpdates: Document[] } {
  const created: IndexDescription[][] = [];
  const outboxCreated: IndexDescription[][] = [];
  const updates: Document[] = [];
  const taskUpdates: Document[] = [];
  return {
    created,
    outboxCreated,
    updates,
    taskUpdates,
    hookOutbox: {
      createIndexes: (indexes) => (outboxCreated.push(indexes), Promise.resolve(indexes.map((i) => i.name ?? ''))),
    },
    tasks: {
      createIndexes: (indexes) => (created.push(indexes), Promise.resolve(indexes.map((i) => i.name ?? ''))),
      updateMany: (filter, update) => (taskUpdates.push({ filter, update }), Promise.resolve()),
    },
    meta: {
      findOne: () => Promise.resolve(storedVersion === null ? null : { _id: 'schema', version: storedVersion }),
      updateOne: (filter, update) => (updates.push({ filter, update }), Promise.resolve()),
    },
  };
}

describe('schema', () => {
  it('the live uniqueKey index is unique and partial on live: true, which every server accepts', () => {
    expect(UNIQUE_KEY_INDEX_SPEC).toEqual({
      key: { uniqueKey: 1 },
      name: UNIQUE_KEY_INDEX,
      unique: true,
      partialFilterExpression: { live: true, uniqueKey: { $type: 'string' } },
    });
  });

  it('every index is named, once', () => {
    const names = TASK_INDEXES.map((index) => index.name);
    expect(names.every((name) => typeof name === 'string')).toBe(true);
    expect(new Set(names).size).toBe(names.length);
  });

  it('the claim indexes hold the claimDue sorts after the state: the aged key, and the priority for agingMs Infinity', () => {
    expect(CLAIM_AGED_INDEX_SPEC).toEqual({ key: { state: 1, ...AGED_DUE_SORT }, name: 'horae_claim_aged' });
    expect(TASK_INDEXES).toContainEqual({ key: { state: 1, ...PRIORITY_DUE_SORT }, name: 'horae_claim_due' });
    expect(TASK_INDEXES).toContainEqual(CLAIM_AGED_INDEX_SPEC);
    // The sort's key order is the index's: an index serves a sort only in its own field order.
    expect(Object.keys(CLAIM_AGED_INDEX_SPEC.key)).toEqual(['state', 'claimOrder', 'scheduledAt', 'createdAt', '_id']);
  });

  it('a fresh database gets the indexes, the counter and the version', async () => {
    const target = recordingTarget(null);
    expect(await migrate(target)).toBe(SCHEMA_VERSION);
    // Version 1's indexes as they shipped, then version 3's.
    expect(target.created).toEqual([TASK_INDEXES.filter((index) => index !== CLAIM_AGED_INDEX_SPEC), [CLAIM_AGED_INDEX_SPEC]]);
    expect(target.created.flat()).toEqual([...TASK_INDEXES]);
    expect(target.updates).toEqual([
      { filter: { _id: 'changes' }, update: { $setOnInsert: { seq: 0, pending: [] } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 1 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 2 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 3 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 4 } } },
    ]);
    expect(target.outboxCreated).toEqual([[...HOOK_OUTBOX_INDEXES]]);
  });

  it('versions are 1, 2, … with no gap, and version 1 is unchanged from the shipped one', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(4);
    expect(MIGRATIONS[0]?.description).toBe('task indexes and the change counter');
  });

  it('version 1 creates the nine indexes it shipped with, and not the aged claim index', async () => {
    const target = recordingTarget(null);
    await MIGRATIONS[0]!.up(target);
    expect(target.created.flat().map((index) => index.name)).toEqual([
      UNIQUE_KEY_INDEX,
      'horae_changes',
      'horae_claim_due',
      'horae_list_due',
      'horae_lease_expiry',
      'horae_list',
      'horae_list_state',
      'horae_list_work',
      'horae_terminal_age',
    ]);
  });

  it('a database at version 1 upgrades: existing tasks get kind scheduled, no schedule and an empty history, then version 3', async () => {
    const target = recordingTarget(1);
    expect(await migrate(target)).toBe(4);
    // Version 1's indexes and counter are not set up again; version 3 adds its index.
    expect(target.created).toEqual([[CLAIM_AGED_INDEX_SPEC]]);
    // Only documents missing a field are touched, and neither updatedAt nor seq moves.
    expect(target.taskUpdates.slice(0, 3)).toEqual([
      { filter: { kind: { $exists: false } }, update: { $set: { kind: 'scheduled' } } },
      { filter: { scheduleName: { $exists: false } }, update: { $set: { scheduleName: null } } },
      { filter: { attempts: { $exists: false } }, update: { $set: { attempts: [] } } },
    ]);
    expect(target.updates).toEqual([
      { filter: { _id: 'schema' }, update: { $max: { version: 2 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 3 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 4 } } },
    ]);
  });

  it('a database at version 2 upgrades: claims = attempt, no unstarted claim, Working leases started, the aged key; then its index', async () => {
    const target = recordingTarget(2);
    expect(await migrate(target)).toBe(4);
    // Only documents missing a field are touched; no update sets updatedAt or seq (a reader sees the same TaskInfo).
    expect(target.taskUpdates).toEqual([
      { filter: { claims: { $exists: false } }, update: [{ $set: { claims: '$attempt' } }] },
      { filter: { unstartedClaims: { $exists: false } }, update: { $set: { unstartedClaims: 0 } } },
      { filter: { state: 'Working', lease: { $type: 'object' }, 'lease.started': { $exists: false } }, update: { $set: { 'lease.started': true } } },
      { filter: { claimOrder: { $exists: false } }, update: [{ $set: { claimOrder: CLAIM_ORDER_EXPRESSION } }] },
    ]);
    expect(JSON.stringify(target.taskUpdates)).not.toMatch(/updatedAt|"seq"/);
    expect(target.created).toEqual([[CLAIM_AGED_INDEX_SPEC]]);
    expect(target.updates).toEqual([
      { filter: { _id: 'schema' }, update: { $max: { version: 3 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 4 } } },
    ]);
  });

  it('a database at version 3 upgrades: the hook outbox indexes only; no task is touched', async () => {
    const target = recordingTarget(3);
    expect(await migrate(target)).toBe(4);
    expect(target.outboxCreated).toEqual([[...HOOK_OUTBOX_INDEXES]]);
    expect(HOOK_OUTBOX_INDEXES.map((index) => index.name)).toEqual(['horae_hook_outbox_pending', 'horae_hook_outbox_task', 'horae_hook_outbox_state', 'horae_hook_outbox_seq']);
    expect(target.created).toEqual([]);
    expect(target.taskUpdates).toEqual([]);
    expect(target.updates).toEqual([{ filter: { _id: 'schema' }, update: { $max: { version: 4 } } }]);
  });

  it('an up-to-date database is left alone', async () => {
    const target = recordingTarget(SCHEMA_VERSION);
    expect(await migrate(target)).toBe(SCHEMA_VERSION);
    expect(target.created).toEqual([]);
    expect(target.outboxCreated).toEqual([]);
    expect(target.updates).toEqual([]);
    expect(target.taskUpdates).toEqual([]);
  });

  it('a newer schema is refused', async () => {
    await expect(migrate(recordingTarget(SCHEMA_VERSION + 1))).rejects.toBeInstanceOf(SchemaVersionError);
  });
});
