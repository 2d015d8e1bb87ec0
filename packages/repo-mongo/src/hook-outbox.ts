/**
 * The HookOutbox of MongoRepository: status hook deliveries as documents of `<prefix>hook_outbox`. Every time is the
 * server's (`$$NOW`); a claim is a compare-and-set per document (on its state and the lease token it was read with),
 * so two nodes never hold one delivery at once. The builders are exported for the server-less tests.
 */
import { randomUUID } from 'node:crypto';
import type { Document } from 'mongodb';
import {
  validateClaimHookDeliveries,
  validateHookDeliveryId,
  validateHookOutcome,
  validateListHookDeliveries,
  validateNewHookDeliveries,
  validatePurgeHookDeliveries,
  type ClaimHookDeliveriesOptions,
  type ClaimedHookDelivery,
  type HookDelivery,
  type HookDeliveryOutcome,
  type HookDeliveryState,
  type HookOutbox,
  type ListHookDeliveriesOptions,
  type NewHookDelivery,
  type PurgeHookDeliveriesOptions,
} from '@horae/storage';

/** A delivery as stored. */
export interface HookOutboxDocument {
  /** The delivery id. */
  _id: string;
  /** The enqueue order. */
  seq: number;
  /** The hook's name. */
  hook: string;
  /** The task the change is about. */
  taskId: string;
  /** The JSON body, as POSTed. */
  body: string;
  /** Pending or dead. */
  state: HookDeliveryState;
  /** POSTs claimed so far. */
  attempts: number;
  /** When it may be claimed next. */
  nextAttemptAt: Date;
  /** The token of the current claim; null when unclaimed. */
  leaseToken: string | null;
  /** Until when the current claim holds it. */
  leaseUntil: Date | null;
  /** Why the last attempt failed. */
  lastError: string | null;
  /** When it was enqueued. */
  createdAt: Date;
  /** When it last changed. */
  updatedAt: Date;
}

/** The `_id` of the meta document that hands out seq numbers. */
export const HOOK_OUTBOX_SEQ_ID = 'hook_outbox_seq';

/**
 * The slice of a driver collection the outbox uses (a driver `Collection` fits).
 *
 * @inline
 */
export interface OutboxCollection {
  /** Runs an aggregation ($match, $sort, $limit). */
  aggregate(pipeline: Document[]): { toArray(): Promise<Document[]> };
  /** Reads one document. */
  findOne(filter: Document): Promise<Document | null>;
  /** A conditional pipeline update of one document, returning it after. */
  findOneAndUpdate(filter: Document, update: Document[], options: { returnDocument: 'after'; upsert?: boolean }): Promise<Document | null>;
  /** A pipeline update of one document, inserting it when missing. */
  updateOne(filter: Document, update: Document[], options: { upsert: boolean }): Promise<unknown>;
  /** Deletes one document. */
  deleteOne(filter: Document): Promise<{ deletedCount: number }>;
  /** Deletes the matching documents. */
  deleteMany(filter: Document): Promise<{ deletedCount: number }>;
}

/** A value written into a pipeline as itself, even a string starting with `$`. */
const literal = (value: unknown): Document => ({ $literal: value });

/** True while a document is not under a live lease: no lease, or one that ended (null sorts below every date). */
const LEASE_FREE = { $lte: [{ $ifNull: ['$leaseUntil', null] }, '$$NOW'] };

/**
 * The pending, due, unleased documents of some hooks.
 *
 * @param hooks - the hook names
 */
export function claimableFilter(hooks: readonly string[]): Document {
  return { state: 'pending', hook: { $in: [...hooks] }, $expr: { $and: [{ $lte: ['$nextAttemptAt', '$$NOW'] }, LEASE_FREE] } };
}

/**
 * A pending document of the same hook and task with a smaller seq: while one exists, `doc` waits (per-task order).
 *
 * @param doc - the candidate
 */
export function earlierPendingFilter(doc: Pick<HookOutboxDocument, 'hook' | 'taskId' | 'seq'>): Document {
  return { state: 'pending', hook: doc.hook, taskId: doc.taskId, seq: { $lt: doc.seq } };
}

/**
 * The compare-and-set of a claim: the document is still pending, still holds the token it was read with, and is
 * still claimable.
 *
 * @param doc - the candidate as read
 */
export function leaseFilter(doc: Pick<HookOutboxDocument, '_id' | 'leaseToken'>): Document {
  return { _id: doc._id, state: 'pending', leaseToken: doc.leaseToken, $expr: { $and: [{ $lte: ['$nextAttemptAt', '$$NOW'] }, LEASE_FREE] } };
}

/**
 * What a claim writes.
 *
 * @param token - the new lease token
 * @param leaseMs - the lease length
 */
export function leasePipeline(token: string, leaseMs: number): Document[] {
  return [{ $set: { leaseToken: literal(token), leaseUntil: { $add: ['$$NOW', leaseMs] }, attempts: { $add: ['$attempts', 1] }, updatedAt: '$$NOW' } }];
}

/**
 * An enqueue: an upsert that fills every field only when it is missing, so an id stored already keeps all of its own.
 *
 * @param delivery - the delivery
 * @param seq - its seq number
 */
export function enqueuePipeline(delivery: NewHookDelivery, seq: number): Document[] {
  const keep = (field: string, value: unknown): Document => ({ $ifNull: [`$${field}`, value] });
  return [
    {
      $set: {
        seq: keep('seq', seq),
        hook: keep('hook', literal(delivery.hook)),
        taskId: keep('taskId', literal(delivery.taskId)),
        body: keep('body', literal(delivery.body)),
        state: keep('state', 'pending'),
        attempts: keep('attempts', 0),
        nextAttemptAt: keep('nextAttemptAt', '$$NOW'),
        leaseToken: keep('leaseToken', null),
        leaseUntil: keep('leaseUntil', null),
        lastError: keep('lastError', null),
        createdAt: keep('createdAt', '$$NOW'),
        updatedAt: keep('updatedAt', '$$NOW'),
      },
    },
  ];
}

/**
 * What a settle writes (`delivered` deletes instead).
 *
 * @param outcome - a retry or a dead letter
 * @param error - the error text
 */
export function settlePipeline(outcome: Exclude<HookDeliveryOutcome, { outcome: 'delivered' }>, error: string): Document[] {
  const common = { leaseToken: null, leaseUntil: null, lastError: literal(error), updatedAt: '$$NOW' };
  return outcome.outcome === 'retry'
    ? [{ $set: { ...common, nextAttemptAt: { $add: ['$$NOW', outcome.delayMs] } } }]
    : [{ $set: { ...common, state: 'dead' } }];
}

/** What a redrive writes. */
export const REDRIVE_PIPELINE: Document[] = [{ $set: { state: 'pending', attempts: 0, nextAttemptAt: '$$NOW', leaseToken: null, leaseUntil: null, updatedAt: '$$NOW' } }];

/**
 * The documents a purge deletes.
 *
 * @param options - the state, the time and the hook
 */
export function purgeFilter(options: PurgeHookDeliveriesOptions): Document {
  return {
    state: options.state,
    ...(options.hook === undefined ? {} : { hook: options.hook }),
    $expr: { $and: [{ $lt: ['$updatedAt', options.before] }, LEASE_FREE] },
  };
}

/**
 * The documents a list returns.
 *
 * @param options - the checked filters
 */
export function listFilter(options: ListHookDeliveriesOptions): Document {
  return {
    ...(options.state === undefined ? {} : { state: options.state }),
    ...(options.hook === undefined ? {} : { hook: options.hook }),
    seq: { $gt: options.afterSeq ?? 0 },
  };
}

function toDelivery(doc: Document): HookDelivery {
  const d = doc as HookOutboxDocument;
  return {
    id: d._id,
    hook: d.hook,
    taskId: d.taskId,
    body: d.body,
    seq: Number(d.seq),
    state: d.state,
    attempts: Number(d.attempts),
    nextAttemptAt: new Date(d.nextAttemptAt),
    lastError: d.lastError ?? null,
    leaseUntil: d.leaseUntil === null || d.leaseUntil === undefined ? null : new Date(d.leaseUntil),
    createdAt: new Date(d.createdAt),
    updatedAt: new Date(d.updatedAt),
  };
}

/**
 * MongoRepository's {@link HookOutbox}. Obtain it with `repository.hookOutbox()`.
 *
 * @remarks A claim reads candidates in seq order (index `{ state, hook, seq }`) and checks each one's task for an
 * earlier pending delivery (index `{ state, hook, taskId, seq }`): one round trip per candidate, which is fine for the
 * handful a claim takes. It reads at most 4 × `limit` candidates: when more of the first candidates than that wait behind
 * an earlier change of their task, the claim returns fewer rows than it could, and the next one goes on. Seq numbers come
 * from a counter document, one update per enqueue.
 */
export class MongoHookOutbox implements HookOutbox {
  readonly #outbox: OutboxCollection;
  readonly #meta: OutboxCollection;
  readonly #run: <T>(operation: string, body: () => Promise<T>) => Promise<T>;

  /**
   * @param outbox - the outbox collection
   * @param meta - the meta collection (the seq counter)
   * @param run - the repository's runner (it waits for the migrations and translates driver errors)
   */
  constructor(outbox: OutboxCollection, meta: OutboxCollection, run: <T>(operation: string, body: () => Promise<T>) => Promise<T>) {
    this.#outbox = outbox;
    this.#meta = meta;
    this.#run = run;
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#enqueueHookDeliveries} */
  async enqueueHookDeliveries(deliveries: readonly NewHookDelivery[]): Promise<void> {
    validateNewHookDeliveries(deliveries);
    if (deliveries.length === 0) return;
    await this.#run('enqueue hook deliveries', async () => {
      const counter = await this.#meta.findOneAndUpdate(
        { _id: HOOK_OUTBOX_SEQ_ID },
        [{ $set: { seq: { $add: [{ $ifNull: ['$seq', 0] }, deliveries.length] } } }],
        { returnDocument: 'after', upsert: true },
      );
      const last = Number(counter?.seq);
      // Not one transaction: an id met again (an enqueue retried) keeps its fields, so a rerun after a failure halfway is safe.
      for (const [i, d] of deliveries.entries()) {
        await this.#outbox.updateOne({ _id: d.id }, enqueuePipeline(d, last - deliveries.length + 1 + i), { upsert: true });
      }
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#claimHookDeliveries} */
  async claimHookDeliveries(options: ClaimHookDeliveriesOptions): Promise<ClaimedHookDelivery[]> {
    validateClaimHookDeliveries(options);
    if (options.hooks.length === 0) return [];
    return this.#run('claim hook deliveries', async () => {
      const candidates = await this.#outbox.aggregate([{ $match: claimableFilter(options.hooks) }, { $sort: { seq: 1 } }, { $limit: options.limit * 4 }]).toArray();
      const claimed: ClaimedHookDelivery[] = [];
      for (const candidate of candidates as HookOutboxDocument[]) {
        if (claimed.length >= options.limit) break;
        if ((await this.#outbox.findOne(earlierPendingFilter(candidate))) !== null) continue;
        const token = randomUUID();
        const won = await this.#outbox.findOneAndUpdate(leaseFilter(candidate), leasePipeline(token, options.leaseMs), { returnDocument: 'after' });
        if (won !== null) claimed.push({ ...toDelivery(won), token });
      }
      return claimed;
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#settleHookDelivery} */
  async settleHookDelivery(id: string, token: string, outcome: HookDeliveryOutcome): Promise<boolean> {
    const error = validateHookOutcome(id, token, outcome);
    const filter = { _id: id, state: 'pending', leaseToken: token };
    return this.#run('settle a hook delivery', async () => {
      if (outcome.outcome === 'delivered') return (await this.#outbox.deleteOne(filter)).deletedCount === 1;
      return (await this.#outbox.findOneAndUpdate(filter, settlePipeline(outcome, error ?? ''), { returnDocument: 'after' })) !== null;
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#listHookDeliveries} */
  async listHookDeliveries(options?: ListHookDeliveriesOptions): Promise<HookDelivery[]> {
    const checked = validateListHookDeliveries(options);
    return this.#run('list hook deliveries', async () =>
      (await this.#outbox.aggregate([{ $match: listFilter(checked) }, { $sort: { seq: 1 } }, { $limit: checked.limit }]).toArray()).map(toDelivery),
    );
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#redriveHookDelivery} */
  async redriveHookDelivery(id: string): Promise<boolean> {
    validateHookDeliveryId(id, 'redriveHookDelivery');
    return this.#run('redrive a hook delivery', async () => (await this.#outbox.findOneAndUpdate({ _id: id, state: 'dead' }, REDRIVE_PIPELINE, { returnDocument: 'after' })) !== null);
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#purgeHookDeliveries} */
  async purgeHookDeliveries(options: PurgeHookDeliveriesOptions): Promise<number> {
    validatePurgeHookDeliveries(options);
    return this.#run('purge hook deliveries', async () => (await this.#outbox.deleteMany(purgeFilter(options))).deletedCount);
  }
}
