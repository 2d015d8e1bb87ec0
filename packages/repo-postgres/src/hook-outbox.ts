/**
 * The HookOutbox of PostgresRepository: status hook deliveries as rows of `hook_outbox`. A claim is one statement
 * that locks its rows with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take disjoint rows without waiting on
 * one another; "now" is the database's clock.
 */
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
import { randomUUID } from 'node:crypto';
import type { RunStatement } from './postgres-schedule-store.js';

/** The statement's start on the database's clock, at millisecond precision. */
const NOW = `date_trunc('milliseconds', statement_timestamp())`;
const MS = `interval '1 millisecond'`;
const COLUMNS = 'seq, id, hook, task_id, body, state, attempts, next_attempt_at, lease_token, lease_until, last_error, created_at, updated_at';

interface OutboxRow {
  seq: string | number;
  id: string;
  hook: string;
  task_id: string;
  body: string;
  state: HookDeliveryState;
  attempts: number;
  next_attempt_at: Date;
  lease_token: string | null;
  lease_until: Date | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
}

function toDelivery(row: OutboxRow): HookDelivery {
  return {
    id: row.id,
    hook: row.hook,
    taskId: row.task_id,
    body: row.body,
    seq: Number(row.seq),
    state: row.state,
    attempts: Number(row.attempts),
    nextAttemptAt: new Date(row.next_attempt_at),
    lastError: row.last_error,
    leaseUntil: row.lease_until === null ? null : new Date(row.lease_until),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The statements, for one quoted schema. */
function statements(s: string) {
  const table = `${s}.hook_outbox`;
  return {
    // unnest keeps the array order (WITH ORDINALITY), so seq follows the order of the call.
    enqueue: `INSERT INTO ${table} (id, hook, task_id, body, state, attempts, next_attempt_at, created_at, updated_at)
      SELECT t.id, t.hook, t.task_id, t.body, 'pending', 0, ${NOW}, ${NOW}, ${NOW}
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(id, hook, task_id, body, n)
      ORDER BY t.n
      ON CONFLICT (id) DO NOTHING`,
    // The oldest claimable rows of one hook (due, unleased or expired, first among the pending rows of their task),
    // locked SKIP LOCKED; a row another claim updated meanwhile is checked again (READ COMMITTED) and left out. One
    // hook per statement: with `hook = $1` the partial index hook_outbox_pending gives the seq order, so the walk
    // never reads dead letters (with `= ANY` the planner walked the primary key past every one of them).
    claim: `WITH picked AS (
        SELECT o.seq FROM ${table} o
        WHERE o.state = 'pending' AND o.hook = $1
          AND o.next_attempt_at <= ${NOW} AND (o.lease_until IS NULL OR o.lease_until <= ${NOW})
          AND NOT EXISTS (SELECT 1 FROM ${table} p WHERE p.state = 'pending' AND p.hook = o.hook AND p.task_id = o.task_id AND p.seq < o.seq)
        ORDER BY o.seq LIMIT $2
        FOR UPDATE SKIP LOCKED
      )
      UPDATE ${table} o SET lease_token = $4 || ':' || o.seq::text, lease_until = ${NOW} + $3 * ${MS}, attempts = o.attempts + 1, updated_at = ${NOW}
      FROM picked WHERE o.seq = picked.seq AND o.state = 'pending' AND (o.lease_until IS NULL OR o.lease_until <= ${NOW})
      RETURNING ${COLUMNS.split(', ').map((c) => `o.${c}`).join(', ')}`,
    delivered: `DELETE FROM ${table} WHERE id = $1 AND state = 'pending' AND lease_token = $2`,
    retry: `UPDATE ${table} SET lease_token = NULL, lease_until = NULL, last_error = $3, next_attempt_at = ${NOW} + $4 * ${MS}, updated_at = ${NOW}
      WHERE id = $1 AND state = 'pending' AND lease_token = $2`,
    dead: `UPDATE ${table} SET state = 'dead', lease_token = NULL, lease_until = NULL, last_error = $3, updated_at = ${NOW}
      WHERE id = $1 AND state = 'pending' AND lease_token = $2`,
    list: `SELECT ${COLUMNS} FROM ${table}
      WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR hook = $2) AND seq > $3 ORDER BY seq LIMIT $4`,
    redrive: `UPDATE ${table} SET state = 'pending', attempts = 0, next_attempt_at = ${NOW}, lease_token = NULL, lease_until = NULL, updated_at = ${NOW}
      WHERE id = $1 AND state = 'dead'`,
    purge: `DELETE FROM ${table} WHERE state = $1 AND updated_at < $2 AND ($3::text IS NULL OR hook = $3)
      AND (lease_until IS NULL OR lease_until <= ${NOW})`,
    // Functions of the schema (migration 8): they also create the hook triggers with the first subscription and
    // drop them with the last, in the same transaction.
    subscribe: `SELECT ${s}.hook_subscribe($1::text[])`,
    unsubscribe: `SELECT ${s}.hook_unsubscribe($1::text[]) AS removed`,
    subscriptions: `SELECT hook FROM ${s}.hook_subscriptions ORDER BY hook`,
  } as const;
}

/**
 * PostgresRepository's {@link HookOutbox}. Obtain it with `repository.hookOutbox()`. It has {@link HookSubscriptions}:
 * the subscribed hooks' deliveries are written by triggers in the transaction of each change.
 *
 * ### Examples
 * ```ts
 * const outbox = repository.hookOutbox();
 * for (const letter of await outbox.listHookDeliveries({ state: 'dead' })) console.log(letter.id, letter.lastError);
 * ```
 */
export class PostgresHookOutbox implements HookOutbox, HookSubscriptions {
  readonly #sql: ReturnType<typeof statements>;
  readonly #run: RunStatement;

  /**
   * @param schema - the quoted schema name
   * @param run - the repository's statement runner (it waits for the migrations and translates errors)
   */
  constructor(schema: string, run: RunStatement) {
    this.#sql = statements(schema);
    this.#run = run;
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#enqueueHookDeliveries} */
  async enqueueHookDeliveries(deliveries: readonly NewHookDelivery[]): Promise<void> {
    validateNewHookDeliveries(deliveries);
    if (deliveries.length === 0) return;
    await this.#run('enqueue hook deliveries', this.#sql.enqueue, [
      deliveries.map((d) => d.id),
      deliveries.map((d) => d.hook),
      deliveries.map((d) => d.taskId),
      deliveries.map((d) => d.body),
    ]);
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#claimHookDeliveries} */
  async claimHookDeliveries(options: ClaimHookDeliveriesOptions): Promise<ClaimedHookDelivery[]> {
    validateClaimHookDeliveries(options);
    if (options.hooks.length === 0) return [];
    const claimed: ClaimedHookDelivery[] = [];
    for (const hook of new Set(options.hooks)) {
      if (claimed.length >= options.limit) break;
      const { rows } = await this.#run('claim hook deliveries', this.#sql.claim, [hook, options.limit - claimed.length, options.leaseMs, randomUUID()]);
      claimed.push(...(rows as unknown as OutboxRow[]).map((row) => ({ ...toDelivery(row), token: row.lease_token ?? '' })));
    }
    return claimed.sort((a, b) => a.seq - b.seq);
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#settleHookDelivery} */
  async settleHookDelivery(id: string, token: string, outcome: HookDeliveryOutcome): Promise<boolean> {
    const error = validateHookOutcome(id, token, outcome);
    const result =
      outcome.outcome === 'delivered'
        ? await this.#run('settle a hook delivery', this.#sql.delivered, [id, token])
        : outcome.outcome === 'retry'
          ? await this.#run('settle a hook delivery', this.#sql.retry, [id, token, error, outcome.delayMs])
          : await this.#run('settle a hook delivery', this.#sql.dead, [id, token, error]);
    return result.rowCount === 1;
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#listHookDeliveries} */
  async listHookDeliveries(options?: ListHookDeliveriesOptions): Promise<HookDelivery[]> {
    const { state, hook, afterSeq, limit } = validateListHookDeliveries(options);
    const { rows } = await this.#run('list hook deliveries', this.#sql.list, [state ?? null, hook ?? null, afterSeq ?? 0, limit]);
    return (rows as unknown as OutboxRow[]).map(toDelivery);
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#redriveHookDelivery} */
  async redriveHookDelivery(id: string): Promise<boolean> {
    validateHookDeliveryId(id, 'redriveHookDelivery');
    const result = await this.#run('redrive a hook delivery', this.#sql.redrive, [id]);
    return result.rowCount === 1;
  }

  /** {@inheritDoc @horae/storage!index.HookOutbox#purgeHookDeliveries} */
  async purgeHookDeliveries(options: PurgeHookDeliveriesOptions): Promise<number> {
    validatePurgeHookDeliveries(options);
    const result = await this.#run('purge hook deliveries', this.#sql.purge, [options.state, options.before, options.hook ?? null]);
    return result.rowCount ?? 0;
  }
  /** {@inheritDoc @horae/storage!index.HookSubscriptions#subscribeHooks} */
  async subscribeHooks(hooks: readonly string[]): Promise<void> {
    validateHookNames(hooks, 'subscribeHooks');
    if (hooks.length === 0) return;
    await this.#run('subscribe hooks', this.#sql.subscribe, [[...hooks]]);
  }

  /** {@inheritDoc @horae/storage!index.HookSubscriptions#unsubscribeHooks} */
  async unsubscribeHooks(hooks: readonly string[]): Promise<number> {
    validateHookNames(hooks, 'unsubscribeHooks');
    if (hooks.length === 0) return 0;
    const { rows } = await this.#run('unsubscribe hooks', this.#sql.unsubscribe, [[...hooks]]);
    return Number((rows[0] as { removed: number } | undefined)?.removed ?? 0);
  }

  /** {@inheritDoc @horae/storage!index.HookSubscriptions#listHookSubscriptions} */
  async listHookSubscriptions(): Promise<string[]> {
    const { rows } = await this.#run('list hook subscriptions', this.#sql.subscriptions, []);
    return (rows as Array<{ hook: string }>).map((row) => row.hook);
  }
}
