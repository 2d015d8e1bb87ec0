/**
 * The HookOutbox of SqliteRepository: status hook deliveries as rows of `horae_hook_outbox`. Every write runs
 * synchronously inside a `BEGIN IMMEDIATE` transaction of the repository's write queue, so a claim's read-then-write
 * is exact across connections and processes.
 */
import { randomUUID } from 'node:crypto';
import {
  validateClaimHookDeliveries,
  validateHookDeliveryId,
  validateHookOutcome,
  validateListHookDeliveries,
  validateNewHookDeliveries,
  validatePurgeHookDeliveries,
  validateHookNames,
  type ClaimHookDeliveriesOptions,
  type ClaimedHookDelivery,
  type HookDelivery,
  type HookDeliveryOutcome,
  type HookDeliveryState,
  type HookOutbox,
  type HookSubscriptions,
  type ListHookDeliveriesOptions,
  type NewHookDelivery,
  type PurgeHookDeliveriesOptions,
} from '@horae/storage';
import type { SqliteDatabase, SqliteStatement } from './driver.js';
import { alsoWrite, type WriteContext } from './group-commit.js';
import { DROP_HOOK_TRIGGERS, HOOK_SUBSCRIPTIONS_TABLE, HOOK_TRIGGERS } from './hook-triggers.js';

/** A row of `horae_hook_outbox`. */
interface OutboxRow {
  seq: number;
  id: string;
  hook: string;
  task_id: string;
  body: string;
  state: HookDeliveryState;
  attempts: number;
  next_attempt_at: number;
  lease_token: string | null;
  lease_until: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

/** How the outbox reaches the repository's write queue and reads (so it shares their transactions and error translation). */
export interface SqliteOutboxAccess {
  /** The open database (to prepare statements). */
  db: SqliteDatabase;
  /** Runs a write in the write queue's transaction. */
  write<T>(action: string, run: (tx: WriteContext) => T): Promise<T>;
  /** Runs a read, translating driver errors. */
  read<T>(action: string, run: () => T): T;
}

const COLUMNS = 'seq, id, hook, task_id, body, state, attempts, next_attempt_at, lease_token, lease_until, last_error, created_at, updated_at';

const SQL = {
  insert: `INSERT INTO horae_hook_outbox (id, hook, task_id, body, state, attempts, next_attempt_at, created_at, updated_at)
    VALUES (:id, :hook, :taskId, :body, 'pending', 0, :now, :now, :now) ON CONFLICT (id) DO NOTHING`,
  // The oldest claimable rows: due, unleased (or lease expired), and first among the pending rows of their hook and task.
  // INDEXED BY: the walk must skip dead letters and delivered history by the index, never scan them (with statistics
  // from a table of mostly pending rows the planner would otherwise scan the table in seq order).
  claimable: `SELECT ${COLUMNS} FROM horae_hook_outbox o INDEXED BY horae_hook_outbox_pending
    WHERE o.state = 'pending' AND o.hook IN (SELECT value FROM json_each(:hooks))
      AND o.next_attempt_at <= :now AND (o.lease_until IS NULL OR o.lease_until <= :now)
      AND NOT EXISTS (SELECT 1 FROM horae_hook_outbox p
                      WHERE p.state = 'pending' AND p.hook = o.hook AND p.task_id = o.task_id AND p.seq < o.seq)
    ORDER BY o.seq LIMIT :limit`,
  lease: `UPDATE horae_hook_outbox SET lease_token = :token, lease_until = :until, attempts = attempts + 1, updated_at = :now WHERE seq = :seq`,
  delivered: `DELETE FROM horae_hook_outbox WHERE id = :id AND state = 'pending' AND lease_token = :token`,
  retry: `UPDATE horae_hook_outbox SET lease_token = NULL, lease_until = NULL, last_error = :error, next_attempt_at = :now + :delayMs, updated_at = :now
    WHERE id = :id AND state = 'pending' AND lease_token = :token`,
  dead: `UPDATE horae_hook_outbox SET state = 'dead', lease_token = NULL, lease_until = NULL, last_error = :error, updated_at = :now
    WHERE id = :id AND state = 'pending' AND lease_token = :token`,
  list: `SELECT ${COLUMNS} FROM horae_hook_outbox
    WHERE (:state IS NULL OR state = :state) AND (:hook IS NULL OR hook = :hook) AND seq > :afterSeq ORDER BY seq LIMIT :limit`,
  redrive: `UPDATE horae_hook_outbox SET state = 'pending', attempts = 0, next_attempt_at = :now, lease_token = NULL, lease_until = NULL, updated_at = :now
    WHERE id = :id AND state = 'dead'`,
  purge: `DELETE FROM horae_hook_outbox WHERE state = :state AND updated_at < :before AND (:hook IS NULL OR hook = :hook)
    AND (lease_until IS NULL OR lease_until <= :now)`,
  subscribe: `INSERT INTO ${HOOK_SUBSCRIPTIONS_TABLE} (hook, created_at) VALUES (:hook, :now) ON CONFLICT (hook) DO NOTHING`,
  unsubscribe: `DELETE FROM ${HOOK_SUBSCRIPTIONS_TABLE} WHERE hook = :hook`,
  subscriptions: `SELECT hook FROM ${HOOK_SUBSCRIPTIONS_TABLE} ORDER BY hook`,
  anySubscription: `SELECT 1 AS one FROM ${HOOK_SUBSCRIPTIONS_TABLE} LIMIT 1`,
} as const;

type Statements = { [K in keyof typeof SQL]: SqliteStatement };

function toDelivery(row: OutboxRow): HookDelivery {
  return {
    id: row.id,
    hook: row.hook,
    taskId: row.task_id,
    body: row.body,
    seq: row.seq,
    state: row.state,
    attempts: row.attempts,
    nextAttemptAt: new Date(row.next_attempt_at),
    lastError: row.last_error,
    leaseUntil: row.lease_until === null ? null : new Date(row.lease_until),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/**
 * SqliteRepository's {@link HookOutbox}. Obtain it with `repository.hookOutbox()`. It has {@link HookSubscriptions}:
 * the subscribed hooks' deliveries are written by triggers in the transaction of each change.
 *
 * ### Examples
 * ```ts
 * const outbox = new SqliteRepository('./horae.db').hookOutbox();
 * const dead = await outbox.listHookDeliveries({ state: 'dead' });
 * ```
 */
export class SqliteHookOutbox implements HookOutbox, HookSubscriptions {
  readonly #access: SqliteOutboxAccess;
  #statements: Statements | undefined;

  /** @param access - the repository's database, write queue and reads */
  constructor(access: SqliteOutboxAccess) {
    this.#access = access;
  }

  /** Prepared on first use: a repository that never uses hooks prepares nothing. */
  get #s(): Statements {
    this.#statements ??= Object.fromEntries(Object.entries(SQL).map(([name, sql]) => [name, this.#access.db.prepare(sql)])) as Statements;
    return this.#statements;
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#enqueueHookDeliveries} */
  async enqueueHookDeliveries(deliveries: readonly NewHookDelivery[]): Promise<void> {
    validateNewHookDeliveries(deliveries);
    if (deliveries.length === 0) return;
    const s = this.#s;
    await this.#access.write('enqueueHookDeliveries', (tx) => {
      deliveries.forEach((d, i) => {
        const insert = (): unknown => s.insert.run({ id: d.id, hook: d.hook, taskId: d.taskId, body: d.body, now: tx.now });
        // After the first statement has written, a failure must roll the whole batch back, not leave half of it.
        if (i === 0) insert();
        else alsoWrite('enqueueing a hook delivery', insert);
      });
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#claimHookDeliveries} */
  async claimHookDeliveries(options: ClaimHookDeliveriesOptions): Promise<ClaimedHookDelivery[]> {
    validateClaimHookDeliveries(options);
    if (options.hooks.length === 0) return [];
    const s = this.#s;
    return this.#access.write('claimHookDeliveries', (tx) => {
      const rows = s.claimable.all({ hooks: JSON.stringify(options.hooks), now: tx.now, limit: options.limit }) as OutboxRow[];
      return rows.map((row) => {
        const token = randomUUID();
        const until = tx.now + options.leaseMs;
        alsoWrite('leasing a hook delivery', () => s.lease.run({ token, until, now: tx.now, seq: row.seq }));
        return { ...toDelivery({ ...row, attempts: row.attempts + 1, lease_until: until, updated_at: tx.now }), token };
      });
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#settleHookDelivery} */
  async settleHookDelivery(id: string, token: string, outcome: HookDeliveryOutcome): Promise<boolean> {
    const error = validateHookOutcome(id, token, outcome);
    const s = this.#s;
    return this.#access.write('settleHookDelivery', (tx) => {
      if (outcome.outcome === 'delivered') return s.delivered.run({ id, token }).changes === 1;
      if (outcome.outcome === 'retry') return s.retry.run({ id, token, error, delayMs: outcome.delayMs, now: tx.now }).changes === 1;
      return s.dead.run({ id, token, error, now: tx.now }).changes === 1;
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#listHookDeliveries} */
  listHookDeliveries(options?: ListHookDeliveriesOptions): Promise<HookDelivery[]> {
    return Promise.resolve().then(() => {
      const { state, hook, afterSeq, limit } = validateListHookDeliveries(options);
      const s = this.#s;
      const rows = this.#access.read('listHookDeliveries', () => s.list.all({ state: state ?? null, hook: hook ?? null, afterSeq: afterSeq ?? 0, limit }) as OutboxRow[]);
      return rows.map(toDelivery);
    });
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#redriveHookDelivery} */
  async redriveHookDelivery(id: string): Promise<boolean> {
    validateHookDeliveryId(id, 'redriveHookDelivery');
    const s = this.#s;
    return this.#access.write('redriveHookDelivery', (tx) => s.redrive.run({ id, now: tx.now }).changes === 1);
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#purgeHookDeliveries} */
  async purgeHookDeliveries(options: PurgeHookDeliveriesOptions): Promise<number> {
    validatePurgeHookDeliveries(options);
    const s = this.#s;
    return this.#access.write('purgeHookDeliveries', (tx) =>
      s.purge.run({ state: options.state, before: options.before.getTime(), hook: options.hook ?? null, now: tx.now }).changes,
    );
  }
  /** {@inheritDoc @horae/storage!index.HookSubscriptions#subscribeHooks} */
  async subscribeHooks(hooks: readonly string[]): Promise<void> {
    validateHookNames(hooks, 'subscribeHooks');
    if (hooks.length === 0) return;
    const s = this.#s;
    await this.#access.write('subscribeHooks', (tx) => {
      hooks.forEach((hook, i) => {
        const insert = (): unknown => s.subscribe.run({ hook, now: tx.now });
        if (i === 0) insert();
        else alsoWrite('subscribing a hook', insert);
      });
      // In the same transaction: no change commits between the subscription and its triggers.
      alsoWrite('creating the hook triggers', () => {
        for (const sql of HOOK_TRIGGERS) this.#access.db.exec(sql);
      });
    });
  }

  /** {@inheritDoc @horae/storage!index.HookSubscriptions#unsubscribeHooks} */
  async unsubscribeHooks(hooks: readonly string[]): Promise<number> {
    validateHookNames(hooks, 'unsubscribeHooks');
    if (hooks.length === 0) return 0;
    const s = this.#s;
    return this.#access.write('unsubscribeHooks', () => {
      let removed = 0;
      hooks.forEach((hook, i) => {
        const remove = (): void => {
          removed += s.unsubscribe.run({ hook }).changes;
        };
        if (i === 0) remove();
        else alsoWrite('unsubscribing a hook', remove);
      });
      if (s.anySubscription.get() === undefined) {
        alsoWrite('dropping the hook triggers', () => {
          for (const sql of DROP_HOOK_TRIGGERS) this.#access.db.exec(sql);
        });
      }
      return removed;
    });
  }

  /** {@inheritDoc @horae/storage!index.HookSubscriptions#listHookSubscriptions} */
  listHookSubscriptions(): Promise<string[]> {
    return Promise.resolve().then(() => {
      const s = this.#s;
      const rows = this.#access.read('listHookSubscriptions', () => s.subscriptions.all() as Array<{ hook: string }>);
      return rows.map((row) => row.hook);
    });
  }
}
