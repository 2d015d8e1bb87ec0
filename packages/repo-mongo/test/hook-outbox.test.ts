/**
 * MongoRepository's hook outbox run over the model of MongoDB's filters and pipelines (pipeline-model.ts), without a
 * server: the real MongoHookOutbox class drives a collection whose finds and updates the model evaluates. This checks
 * the outbox's logic (which filter and pipeline each call sends, the per-task order, the token fencing, what an id
 * met again keeps); the server itself is checked by the conformance suite when MONGODB_URI is set.
 */
import { describe, expect, it } from 'vitest';
import type { Document } from 'mongodb';
import { MongoHookOutbox, type OutboxCollection } from '../src/hook-outbox.js';
import { aggregate, applyPipeline, matches, type Doc } from './pipeline-model.js';

/** A collection held in memory whose operations the model evaluates at `clock.now`. */
class ModelCollection implements OutboxCollection {
  readonly docs: Doc[] = [];
  constructor(readonly clock: { now: Date }) {}

  aggregate(pipeline: Document[]): { toArray(): Promise<Document[]> } {
    const result = aggregate(this.docs, pipeline, this.clock.now);
    return { toArray: () => Promise.resolve(result) };
  }

  findOne(filter: Document): Promise<Document | null> {
    const found = this.docs.find((doc) => matches(doc, filter, this.clock.now));
    return Promise.resolve(found === undefined ? null : structuredClone(found));
  }

  findOneAndUpdate(filter: Document, update: Document[], options: { returnDocument: 'after'; upsert?: boolean }): Promise<Document | null> {
    const index = this.docs.findIndex((doc) => matches(doc, filter, this.clock.now));
    if (index < 0) {
      if (options.upsert !== true) return Promise.resolve(null);
      const created = applyPipeline({ _id: filter._id as string }, update, this.clock.now);
      this.docs.push(created);
      return Promise.resolve(structuredClone(created));
    }
    this.docs[index] = applyPipeline(this.docs[index]!, update, this.clock.now);
    return Promise.resolve(structuredClone(this.docs[index]));
  }

  async updateOne(filter: Document, update: Document[], options: { upsert: boolean }): Promise<unknown> {
    await this.findOneAndUpdate(filter, update, { returnDocument: 'after', upsert: options.upsert });
    return undefined;
  }

  deleteOne(filter: Document): Promise<{ deletedCount: number }> {
    const index = this.docs.findIndex((doc) => matches(doc, filter, this.clock.now));
    if (index >= 0) this.docs.splice(index, 1);
    return Promise.resolve({ deletedCount: index >= 0 ? 1 : 0 });
  }

  deleteMany(filter: Document): Promise<{ deletedCount: number }> {
    const kept = this.docs.filter((doc) => !matches(doc, filter, this.clock.now));
    const deletedCount = this.docs.length - kept.length;
    this.docs.splice(0, this.docs.length, ...kept);
    return Promise.resolve({ deletedCount });
  }
}

function world(): { clock: { now: Date }; outbox: MongoHookOutbox; docs: ModelCollection } {
  const clock = { now: new Date('2026-12-01T00:00:00.000Z') };
  const docs = new ModelCollection(clock);
  const meta = new ModelCollection(clock);
  return { clock, docs, outbox: new MongoHookOutbox(docs, meta, (_operation, body) => body()) };
}

const at = (clock: { now: Date }, ms: number): void => {
  clock.now = new Date(clock.now.getTime() + ms);
};
const CLAIM = { hooks: ['default'], limit: 10, leaseMs: 60_000 };
const delivery = (id: string, taskId = id, hook = 'default') => ({ id, hook, taskId, body: '{"$where":"kept as text"}' });

describe('MongoHookOutbox over the pipeline model', () => {
  it('enqueue numbers rows in call order; an id met again keeps every field of its own', async () => {
    const { clock, outbox } = world();
    await outbox.enqueueHookDeliveries([delivery('a'), delivery('b')]);
    at(clock, 1000);
    await outbox.enqueueHookDeliveries([{ ...delivery('a'), body: 'replaced' }, delivery('c')]);
    const rows = await outbox.listHookDeliveries();
    expect(rows.map((r) => [r.id, r.seq, r.body])).toEqual([
      ['a', 1, '{"$where":"kept as text"}'],
      ['b', 2, '{"$where":"kept as text"}'],
      ['c', 4, '{"$where":"kept as text"}'],
    ]);
    expect(rows[0]).toMatchObject({ state: 'pending', attempts: 0, lastError: null, leaseUntil: null, createdAt: new Date('2026-12-01T00:00:00.000Z') });
  });

  it('a claim takes due heads in seq order, leases them and counts the attempt; a second claim gets nothing', async () => {
    const { clock, outbox } = world();
    await outbox.enqueueHookDeliveries([delivery('a1', 't1'), delivery('a2', 't1'), delivery('b1', 't2'), delivery('x', 'x', 'other')]);
    const claimed = await outbox.claimHookDeliveries(CLAIM);
    expect(claimed.map((c) => [c.id, c.attempts])).toEqual([
      ['a1', 1],
      ['b1', 1],
    ]);
    expect(claimed[0]!.leaseUntil).toEqual(new Date(clock.now.getTime() + 60_000));
    expect(await outbox.claimHookDeliveries(CLAIM)).toEqual([]);
    // The lease ends: the same rows come back, with a new token; the old token settles nothing.
    at(clock, 60_000);
    const again = await outbox.claimHookDeliveries(CLAIM);
    expect(again.map((c) => [c.id, c.attempts])).toEqual([
      ['a1', 2],
      ['b1', 2],
    ]);
    expect(await outbox.settleHookDelivery('a1', claimed[0]!.token, { outcome: 'delivered' })).toBe(false);
    expect(await outbox.settleHookDelivery('a1', again[0]!.token, { outcome: 'delivered' })).toBe(true);
    // With a1 gone, a2 is its task's head.
    expect((await outbox.claimHookDeliveries(CLAIM)).map((c) => c.id)).toEqual(['a2']);
  });

  it('a retry waits on the server clock; a dead letter is never claimed until redriven; purge honours age and leases', async () => {
    const { clock, outbox } = world();
    await outbox.enqueueHookDeliveries([delivery('r'), delivery('d')]);
    const [r, d] = await outbox.claimHookDeliveries(CLAIM);
    expect(await outbox.settleHookDelivery(r!.id, r!.token, { outcome: 'retry', delayMs: 5000, error: '$500 from the receiver' })).toBe(true);
    expect(await outbox.settleHookDelivery(d!.id, d!.token, { outcome: 'dead', error: 'HTTP 410' })).toBe(true);
    const [stored] = await outbox.listHookDeliveries({ state: 'pending' });
    expect(stored).toMatchObject({ id: 'r', lastError: '$500 from the receiver', leaseUntil: null, nextAttemptAt: new Date(clock.now.getTime() + 5000) });
    at(clock, 4999);
    expect(await outbox.claimHookDeliveries(CLAIM)).toEqual([]);
    at(clock, 1);
    expect((await outbox.claimHookDeliveries(CLAIM)).map((c) => c.id)).toEqual(['r']);
    expect((await outbox.listHookDeliveries({ state: 'dead' })).map((l) => [l.id, l.lastError])).toEqual([['d', 'HTTP 410']]);
    expect(await outbox.purgeHookDeliveries({ state: 'dead', before: new Date(clock.now.getTime() - 60_000) })).toBe(0);
    expect(await outbox.redriveHookDelivery('r')).toBe(false);
    expect(await outbox.redriveHookDelivery('d')).toBe(true);
    expect((await outbox.claimHookDeliveries(CLAIM)).map((c) => [c.id, c.attempts])).toEqual([['d', 1]]);
    // Both are leased now: a purge of old pending rows keeps them.
    expect(await outbox.purgeHookDeliveries({ state: 'pending', before: new Date(clock.now.getTime() + 1) })).toBe(0);
    at(clock, 60_000);
    expect(await outbox.purgeHookDeliveries({ state: 'pending', before: new Date(clock.now.getTime() + 1) })).toBe(2);
  });
});
