/**
 * The hook outbox of one in-memory "database": MemoryRepository's {@link HookOutbox}, shared by all the peers
 * opened on one store. For tests and single-process use: it lives as long as the process.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '@horae/core';
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
  type HookOutbox,
  type ListHookDeliveriesOptions,
  type NewHookDelivery,
  type PurgeHookDeliveriesOptions,
} from '../hooks/hook-outbox.js';

interface Row extends HookDelivery {
  token: string | null;
}

/** What the peers of one store share: the rows by id (Map order is seq order: rows are only appended) and the last seq. */
interface SharedRows {
  rows: Map<string, Row>;
  seq: number;
}

/**
 * A hook outbox held in memory. Every method does its checks and its write in one synchronous step, so the claim
 * rules of {@link HookOutbox} hold exactly between peers of one process.
 *
 * ### Examples
 * ```ts
 * const outbox = new MemoryHookOutbox(realClock);
 * await outbox.enqueueHookDeliveries([{ id: 'd1', hook: 'default', taskId: 't1', body: '{}' }]);
 * ```
 */
export class MemoryHookOutbox implements HookOutbox {
  #shared: SharedRows;
  readonly #clock: Clock;
  readonly #guard: (operation: string) => void;

  /**
   * @param clock - the "database clock" of createdAt, updatedAt, due times and leases
   * @param guard - called before every operation; throws to fail it (MemoryRepository's unavailable switch)
   */
  constructor(clock: Clock, guard: (operation: string) => void = () => undefined) {
    this.#shared = { rows: new Map(), seq: 0 };
    this.#clock = clock;
    this.#guard = guard;
  }

  /**
   * Another client of the same rows, as a peer repository has.
   *
   * @param guard - the peer's own guard
   * @returns an outbox sharing this one's rows and clock
   */
  peer(guard: (operation: string) => void): MemoryHookOutbox {
    const other = new MemoryHookOutbox(this.#clock, guard);
    other.#shared = this.#shared;
    return other;
  }

  get #rows(): Map<string, Row> {
    return this.#shared.rows;
  }

  /** {@inheritDoc HookOutbox.enqueueHookDeliveries} */
  enqueueHookDeliveries(deliveries: readonly NewHookDelivery[]): Promise<void> {
    return this.#attempt('enqueueHookDeliveries', () => {
      validateNewHookDeliveries(deliveries);
      const now = this.#clock.now();
      for (const d of deliveries) {
        if (this.#rows.has(d.id)) continue;
        this.#rows.set(d.id, {
          id: d.id,
          hook: d.hook,
          taskId: d.taskId,
          body: d.body,
          seq: ++this.#shared.seq,
          state: 'pending',
          attempts: 0,
          nextAttemptAt: new Date(now),
          lastError: null,
          leaseUntil: null,
          createdAt: new Date(now),
          updatedAt: new Date(now),
          token: null,
        });
      }
    });
  }

  /** {@inheritDoc HookOutbox.claimHookDeliveries} */
  claimHookDeliveries(options: ClaimHookDeliveriesOptions): Promise<ClaimedHookDelivery[]> {
    return this.#attempt('claimHookDeliveries', () => {
      validateClaimHookDeliveries(options);
      const now = this.#clock.now();
      const hooks = new Set(options.hooks);
      const headSeen = new Set<string>();
      const claimed: ClaimedHookDelivery[] = [];
      for (const row of this.#rows.values()) {
        if (claimed.length >= options.limit) break;
        if (row.state !== 'pending' || !hooks.has(row.hook)) continue;
        // Only the first pending row of each (hook, task) may go: later ones wait for it.
        const key = `${row.hook}\u0000${row.taskId}`;
        if (headSeen.has(key)) continue;
        headSeen.add(key);
        if (row.nextAttemptAt.getTime() > now || (row.leaseUntil !== null && row.leaseUntil.getTime() > now)) continue;
        row.token = randomUUID();
        row.leaseUntil = new Date(now + options.leaseMs);
        row.attempts += 1;
        row.updatedAt = new Date(now);
        claimed.push({ ...copy(row), token: row.token });
      }
      return claimed;
    });
  }

  /** {@inheritDoc HookOutbox.settleHookDelivery} */
  settleHookDelivery(id: string, token: string, outcome: HookDeliveryOutcome): Promise<boolean> {
    return this.#attempt('settleHookDelivery', () => {
      const error = validateHookOutcome(id, token, outcome);
      const row = this.#rows.get(id);
      if (row === undefined || row.state !== 'pending' || row.token !== token) return false;
      const now = this.#clock.now();
      if (outcome.outcome === 'delivered') {
        this.#rows.delete(id);
        return true;
      }
      row.token = null;
      row.leaseUntil = null;
      row.lastError = error;
      row.updatedAt = new Date(now);
      if (outcome.outcome === 'retry') row.nextAttemptAt = new Date(now + outcome.delayMs);
      else row.state = 'dead';
      return true;
    });
  }

  /** {@inheritDoc HookOutbox.listHookDeliveries} */
  listHookDeliveries(options?: ListHookDeliveriesOptions): Promise<HookDelivery[]> {
    return this.#attempt('listHookDeliveries', () => {
      const { state, hook, afterSeq, limit } = validateListHookDeliveries(options);
      const out: HookDelivery[] = [];
      for (const row of this.#rows.values()) {
        if (out.length >= limit) break;
        if ((state !== undefined && row.state !== state) || (hook !== undefined && row.hook !== hook) || (afterSeq !== undefined && row.seq <= afterSeq)) continue;
        out.push(copy(row));
      }
      return out;
    });
  }

  /** {@inheritDoc HookOutbox.redriveHookDelivery} */
  redriveHookDelivery(id: string): Promise<boolean> {
    return this.#attempt('redriveHookDelivery', () => {
      validateHookDeliveryId(id, 'redriveHookDelivery');
      const row = this.#rows.get(id);
      if (row === undefined || row.state !== 'dead') return false;
      const now = this.#clock.now();
      Object.assign(row, { state: 'pending', attempts: 0, nextAttemptAt: new Date(now), updatedAt: new Date(now), token: null, leaseUntil: null });
      return true;
    });
  }

  /** {@inheritDoc HookOutbox.purgeHookDeliveries} */
  purgeHookDeliveries(options: PurgeHookDeliveriesOptions): Promise<number> {
    return this.#attempt('purgeHookDeliveries', () => {
      validatePurgeHookDeliveries(options);
      const now = this.#clock.now();
      const before = options.before.getTime();
      let deleted = 0;
      for (const [id, row] of this.#rows) {
        if (row.state !== options.state || row.updatedAt.getTime() >= before || (options.hook !== undefined && row.hook !== options.hook)) continue;
        if (row.leaseUntil !== null && row.leaseUntil.getTime() > now) continue;
        this.#rows.delete(id);
        deleted += 1;
      }
      return deleted;
    });
  }

  /** Runs a synchronous step on a later microtask, as MemoryRepository does: a throw becomes a rejection. */
  #attempt<T>(operation: string, run: () => T): Promise<T> {
    return Promise.resolve().then(() => {
      this.#guard(operation);
      return run();
    });
  }
}

function copy(row: Row): HookDelivery {
  return {
    id: row.id,
    hook: row.hook,
    taskId: row.taskId,
    body: row.body,
    seq: row.seq,
    state: row.state,
    attempts: row.attempts,
    nextAttemptAt: new Date(row.nextAttemptAt.getTime()),
    lastError: row.lastError,
    leaseUntil: row.leaseUntil === null ? null : new Date(row.leaseUntil.getTime()),
    createdAt: new Date(row.createdAt.getTime()),
    updatedAt: new Date(row.updatedAt.getTime()),
  };
}

