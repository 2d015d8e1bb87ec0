import { describe, expect, it } from 'vitest';
import type { Document, IndexDescription } from 'mongodb';
import { SchemaVersionError } from '@horae/storage';
import { MIGRATIONS, SCHEMA_VERSION, TASK_INDEXES, UNIQUE_KEY_INDEX, UNIQUE_KEY_INDEX_SPEC, migrate } from '../src/schema.js';
import type { SchemaTarget } from '../src/schema.js';

/** An in-memory stand-in that records what migrate asks for; it checks migrate's own logic, not MongoDB. */
function recordingTarget(storedVersion: number | null): SchemaTarget & { created: IndexDescription[][]; updates: Document[]; taskUpdates: Document[] } {
  const created: IndexDescription[][] = [];
  const updates: Document[] = [];
  const taskUpdates: Document[] = [];
  return {
    created,
    updates,
    taskUpdates,
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

  it('a fresh database gets the indexes, the counter and the version', async () => {
    const target = recordingTarget(null);
    expect(await migrate(target)).toBe(SCHEMA_VERSION);
    expect(target.created).toEqual([[...TASK_INDEXES]]);
    expect(target.updates).toEqual([
      { filter: { _id: 'changes' }, update: { $setOnInsert: { seq: 0, pending: [] } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 1 } } },
      { filter: { _id: 'schema' }, update: { $max: { version: 2 } } },
    ]);
  });

  it('versions are 1, 2, … with no gap, and version 1 is unchanged from the shipped one', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(2);
    expect(MIGRATIONS[0]?.description).toBe('task indexes and the change counter');
  });

  it('a database at version 1 upgrades: existing tasks get kind scheduled, no schedule and an empty history', async () => {
    const target = recordingTarget(1);
    expect(await migrate(target)).toBe(2);
    // Version 1's indexes and counter are not set up again.
    expect(target.created).toEqual([]);
    // Only documents missing a field are touched, and neither updatedAt nor seq moves.
    expect(target.taskUpdates).toEqual([
      { filter: { kind: { $exists: false } }, update: { $set: { kind: 'scheduled' } } },
      { filter: { scheduleName: { $exists: false } }, update: { $set: { scheduleName: null } } },
      { filter: { attempts: { $exists: false } }, update: { $set: { attempts: [] } } },
    ]);
    expect(target.updates).toEqual([{ filter: { _id: 'schema' }, update: { $max: { version: 2 } } }]);
  });

  it('an up-to-date database is left alone', async () => {
    const target = recordingTarget(SCHEMA_VERSION);
    expect(await migrate(target)).toBe(SCHEMA_VERSION);
    expect(target.created).toEqual([]);
    expect(target.updates).toEqual([]);
    expect(target.taskUpdates).toEqual([]);
  });

  it('a newer schema is refused', async () => {
    await expect(migrate(recordingTarget(SCHEMA_VERSION + 1))).rejects.toBeInstanceOf(SchemaVersionError);
  });
});
