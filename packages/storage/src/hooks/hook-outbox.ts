/**
 * What leaves the process is durable (DESIGN semantic 12): the contract of the hook outbox, the store of the status
 * hook deliveries not yet made. Each pending delivery is a row; any node claims due rows under a lease, POSTs them
 * and settles them (delivered rows are deleted, failed ones wait for their next try or become dead letters).
 */
import { InvalidInputError } from '@horae/core';
import type { Repository } from '../contract/repository.js';

/** Where a delivery stands: waiting for its (next) POST, or given up (a dead letter, kept for operators until purged). */
export type HookDeliveryState = 'pending' | 'dead';

/** One delivery to enqueue: a change, for one hook. */
export interface NewHookDelivery {
  /** The delivery id (the `webhook-id` the receiver dedupes on): unique, at most 200 characters. */
  id: string;
  /** The name of the hook (receiver) it is for: at most 200 characters. */
  hook: string;
  /** The task the change is about: deliveries of one task to one hook are made in enqueue order. At most 1024 characters. */
  taskId: string;
  /** The JSON body, exactly as it will be POSTed. */
  body: string;
}

/** A delivery as stored. */
export interface HookDelivery extends NewHookDelivery {
  /** The enqueue order, assigned by the store: increases with every enqueued row. */
  seq: number;
  /** Pending or dead. */
  state: HookDeliveryState;
  /** POSTs claimed so far (a claim counts even if its node died before the POST ended). */
  attempts: number;
  /** When a pending delivery may be claimed next (database clock). */
  nextAttemptAt: Date;
  /** Why the last attempt failed; null before any failure. */
  lastError: string | null;
  /** Until when the current claim holds it; null when unclaimed. */
  leaseUntil: Date | null;
  /** When it was enqueued (database clock). */
  createdAt: Date;
  /** When it last changed (database clock). */
  updatedAt: Date;
}

/** A delivery handed to one claimer, with the token that settles it. */
export interface ClaimedHookDelivery extends HookDelivery {
  /** The claim's token: {@link HookOutbox.settleHookDelivery} takes effect only with it. */
  token: string;
}

/** Options of {@link HookOutbox.claimHookDeliveries}. */
export interface ClaimHookDeliveriesOptions {
  /** Only deliveries for these hooks (the ones this node can POST to). */
  hooks: readonly string[];
  /** The most deliveries to claim: an integer from 1 to 1000. */
  limit: number;
  /** How long the claim holds each delivery: an integer ≥ 0 (ms). Keep it above the POST timeout. */
  leaseMs: number;
}

/** What came of a claimed delivery's POST. */
export type HookDeliveryOutcome =
  /** Delivered: the row is deleted. */
  | { outcome: 'delivered' }
  /** Failed, to be tried again after `delayMs` (an integer ≥ 0). */
  | { outcome: 'retry'; delayMs: number; error: string }
  /** Given up: the row becomes a dead letter. */
  | { outcome: 'dead'; error: string };

/** Filters of {@link HookOutbox.listHookDeliveries}. */
export interface ListHookDeliveriesOptions {
  /** Only rows in this state. @defaultValue both */
  state?: HookDeliveryState;
  /** Only rows of this hook. @defaultValue all hooks */
  hook?: string;
  /** Only rows whose seq is greater (the page after the last row seen). @defaultValue from the start */
  afterSeq?: number;
  /** The most rows to return: 1 to 1000. @defaultValue 100 */
  limit?: number;
}

/** Options of {@link HookOutbox.purgeHookDeliveries}. */
export interface PurgeHookDeliveriesOptions {
  /** Which rows: dead letters, or pending rows (those of a hook no node delivers any more, say). */
  state: HookDeliveryState;
  /** Rows last changed before this time are deleted (a pending row under a live claim is kept). */
  before: Date;
  /** Only rows of this hook. @defaultValue all hooks */
  hook?: string;
}

/**
 * The hook outbox: status hook deliveries as rows. An optional capability of a repository, reached through
 * {@link HookOutboxProvider.hookOutbox}; the conformance suite of `@horae/storage/testing` checks these rules on
 * every repository that has it.
 *
 * Times (createdAt, updatedAt, nextAttemptAt, leaseUntil, and the "now" claims compare with) come from the
 * database's clock where it has one. Bad input throws InvalidInputError with nothing written. Every method returns
 * copies.
 */
export interface HookOutbox {
  /**
   * Adds deliveries, pending and due at once, in the given order (their seq increases in that order).
   *
   * Rules: all or nothing. An id already stored (pending or dead) is skipped, not replaced and not an error, so that
   * an enqueue retried after an ambiguous failure adds each delivery once.
   *
   * @throws InvalidInputError on a malformed delivery (nothing is written)
   */
  enqueueHookDeliveries(deliveries: readonly NewHookDelivery[]): Promise<void>;

  /**
   * Claims due deliveries for some hooks.
   *
   * Rules: a delivery is claimable when it is pending, its hook is listed, its nextAttemptAt is not after now, its
   * lease is null or expired, and no pending delivery of the same hook and task has a smaller seq (so one task's
   * changes go out one at a time, in order). Claimable rows are taken in seq order, up to `limit`; each claim sets
   * a new token, leaseUntil = now + leaseMs and adds one to attempts. Of concurrent claims, on any clients, each
   * delivery goes to at most one of them while its lease lasts.
   */
  claimHookDeliveries(options: ClaimHookDeliveriesOptions): Promise<ClaimedHookDelivery[]>;

  /**
   * Records what came of a claimed delivery.
   *
   * Rules: it takes effect only while the row is pending and holds `token` (its claim was not taken over, redriven
   * or purged); it returns whether it did. `delivered` deletes the row; `retry` clears the lease and sets
   * nextAttemptAt = now + delayMs and lastError; `dead` makes it a dead letter (lease cleared, lastError set).
   *
   * @throws InvalidInputError on a malformed outcome (nothing is written)
   */
  settleHookDelivery(id: string, token: string, outcome: HookDeliveryOutcome): Promise<boolean>;

  /** Lists deliveries in seq order, for operators. */
  listHookDeliveries(options?: ListHookDeliveriesOptions): Promise<HookDelivery[]>;

  /**
   * Sends a dead letter again: it becomes pending with attempts 0, due now (lastError kept).
   *
   * @returns true when a dead delivery had the id; false otherwise (nothing is written)
   */
  redriveHookDelivery(id: string): Promise<boolean>;

  /**
   * Deletes the rows of one state last changed before a time (retention).
   *
   * @returns how many rows were deleted
   */
  purgeHookDeliveries(options: PurgeHookDeliveriesOptions): Promise<number>;
}

/**
 * A hook outbox that writes the deliveries itself, in the transaction of each state change: an optional capability
 * of a {@link HookOutbox} (SqliteRepository's and PostgresRepository's have it, by triggers on the tasks and attempt
 * tables). With it, a change is never committed without its deliveries, whichever client wrote it (a node, an
 * operator's script, another process), so no crash and no outage between the two can lose one. Without it the node
 * enqueues the changes it made after they committed (`HookEnqueuer`).
 *
 * Rules, for every hook subscribed at the time of the change (one pending row per hook, in hook-name order, due at
 * once), the body being the JSON of a `StatusHookPayload` whose `attempt` and `time` are the task's `attempt` and
 * `updatedAt` after the change:
 * - a task is inserted (not an insert that found its id or uniqueKey taken): `null → Initialized`;
 * - a run starts (its attempt record is opened, by a claim that starts it or by `markAsStarted`):
 *   `Initialized → Working`;
 * - a run ends other than by a cancel (its record leaves `running`): `Working →` the task's new state (Done; Failed;
 *   Initialized for a retry, a reclaimed lease or a run handed back), with the run's error when its record has one;
 * - a task fails without a started run (a poison task, `markAsFailed` out of Initialized): `Initialized → Failed`
 *   with its error;
 * - a live task is cancelled: `Working` (its run had started) or `Initialized` (it had not) `→ Cancelled`.
 *
 * Nothing else writes a delivery: a claim ahead, its hand-back before a start, a lease renewal, progress, an update
 * of an Initialized task. A write that is refused (a lost lease, a wrong state) writes none.
 */
export interface HookSubscriptions {
  /**
   * Subscribes hooks (idempotent): from its commit on, every change writes a delivery for each of them.
   * Subscriptions are stored: they hold across restarts and for every client of the database.
   *
   * @param hooks - hook names, each a non-empty string of at most 200 characters
   * @throws InvalidInputError on a bad name (nothing is written)
   */
  subscribeHooks(hooks: readonly string[]): Promise<void>;
  /**
   * Ends subscriptions: changes from then on write no deliveries for these hooks. Their pending rows stay (purge them
   * with {@link HookOutbox.purgeHookDeliveries}).
   *
   * @param hooks - hook names
   * @returns how many subscriptions were removed
   * @throws InvalidInputError on a bad name (nothing is written)
   */
  unsubscribeHooks(hooks: readonly string[]): Promise<number>;
  /** The subscribed hook names, sorted. */
  listHookSubscriptions(): Promise<string[]>;
}

/**
 * True when `outbox` writes deliveries in the transaction of each change.
 *
 * @param outbox - a repository's hook outbox
 * @returns whether it has {@link HookSubscriptions}
 */
export function hasHookSubscriptions(outbox: HookOutbox): outbox is HookOutbox & HookSubscriptions {
  const candidate = outbox as Partial<HookSubscriptions>;
  return typeof candidate.subscribeHooks === 'function' && typeof candidate.unsubscribeHooks === 'function' && typeof candidate.listHookSubscriptions === 'function';
}

/**
 * Checks the hook names of a subscribe or unsubscribe call.
 *
 * @param hooks - the names
 * @param what - the call, for the message
 * @throws InvalidInputError unless an array of non-empty strings of at most 200 characters
 */
export function validateHookNames(hooks: readonly string[], what: string): void {
  if (!Array.isArray(hooks)) throw new InvalidInputError(`${what} takes an array of hook names`);
  for (const hook of hooks as readonly unknown[]) checkName(hook, `${what}: a hook name`, MAX_HOOK_NAME_LENGTH);
}

/** A repository that stores status hook deliveries: it hands out its {@link HookOutbox}. */
export interface HookOutboxProvider {
  /** The outbox on the same database (the same object on every call). */
  hookOutbox(): HookOutbox;
}

/**
 * True when `repository` has a hook outbox.
 *
 * @param repository - any repository
 * @returns whether status hook deliveries can be stored in it
 */
export function isHookOutboxProvider(repository: Repository): repository is Repository & HookOutboxProvider {
  return typeof (repository as Partial<HookOutboxProvider>).hookOutbox === 'function';
}

/** The longest delivery id and hook name. */
export const MAX_HOOK_NAME_LENGTH = 200;
/** The longest task id a delivery names (the storage's task id bound). */
export const MAX_HOOK_TASK_ID_LENGTH = 1024;
/** The most deliveries one claim or one list returns. */
export const MAX_HOOK_PAGE = 1000;
/** The longest lastError kept. */
export const MAX_HOOK_ERROR_LENGTH = 2000;

/**
 * Checks deliveries before an enqueue writes anything.
 *
 * @param deliveries - what to enqueue
 * @throws InvalidInputError naming the first bad field
 */
export function validateNewHookDeliveries(deliveries: readonly NewHookDelivery[]): void {
  if (!Array.isArray(deliveries)) throw new InvalidInputError('enqueueHookDeliveries takes an array of deliveries');
  const list: readonly NewHookDelivery[] = deliveries;
  for (const [i, d] of list.entries()) {
    if (d === null || typeof d !== 'object') throw new InvalidInputError(`hook delivery ${i} is not an object`);
    checkName(d.id, `hook delivery ${i}: id`, MAX_HOOK_NAME_LENGTH);
    checkName(d.hook, `hook delivery ${i}: hook`, MAX_HOOK_NAME_LENGTH);
    checkName(d.taskId, `hook delivery ${i}: taskId`, MAX_HOOK_TASK_ID_LENGTH);
    if (typeof d.body !== 'string') throw new InvalidInputError(`hook delivery ${i}: body must be a string`);
  }
}

/**
 * Checks claim options.
 *
 * @param options - the claim's options
 * @throws InvalidInputError on a bad list of hooks, limit or leaseMs
 */
export function validateClaimHookDeliveries(options: ClaimHookDeliveriesOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('claimHookDeliveries takes { hooks, limit, leaseMs }');
  if (!Array.isArray(options.hooks)) throw new InvalidInputError('claimHookDeliveries: hooks must be an array of hook names');
  for (const hook of options.hooks) checkName(hook, 'claimHookDeliveries: a hook name', MAX_HOOK_NAME_LENGTH);
  checkInteger(options.limit, 'claimHookDeliveries: limit', 1, MAX_HOOK_PAGE);
  checkInteger(options.leaseMs, 'claimHookDeliveries: leaseMs', 0, 2 ** 31 - 1);
}

/**
 * Checks a settle call.
 *
 * @param id - the delivery id
 * @param token - the claim's token
 * @param outcome - what came of the POST
 * @returns the error text to store, cut to {@link MAX_HOOK_ERROR_LENGTH}, or null for `delivered`
 * @throws InvalidInputError on a bad id, token or outcome
 */
export function validateHookOutcome(id: string, token: string, outcome: HookDeliveryOutcome): string | null {
  checkName(id, 'settleHookDelivery: id', MAX_HOOK_NAME_LENGTH);
  checkName(token, 'settleHookDelivery: token', MAX_HOOK_NAME_LENGTH);
  if (outcome === null || typeof outcome !== 'object') throw new InvalidInputError('settleHookDelivery: outcome must be an object');
  if (outcome.outcome === 'delivered') return null;
  if (outcome.outcome !== 'retry' && outcome.outcome !== 'dead') {
    throw new InvalidInputError(`settleHookDelivery: outcome must be 'delivered', 'retry' or 'dead'`);
  }
  if (typeof outcome.error !== 'string') throw new InvalidInputError('settleHookDelivery: error must be a string');
  if (outcome.outcome === 'retry') checkInteger(outcome.delayMs, 'settleHookDelivery: delayMs', 0, 2 ** 31 - 1);
  return outcome.error.slice(0, MAX_HOOK_ERROR_LENGTH);
}

/**
 * Checks list options and fills in the defaults.
 *
 * @param options - the filters
 * @returns the filters with `limit` set
 * @throws InvalidInputError on a bad state, hook, afterSeq or limit
 */
export function validateListHookDeliveries(options: ListHookDeliveriesOptions = {}): ListHookDeliveriesOptions & { limit: number } {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('listHookDeliveries takes an options object');
  if (options.state !== undefined) checkState(options.state, 'listHookDeliveries: state');
  if (options.hook !== undefined) checkName(options.hook, 'listHookDeliveries: hook', MAX_HOOK_NAME_LENGTH);
  if (options.afterSeq !== undefined) checkInteger(options.afterSeq, 'listHookDeliveries: afterSeq', 0, Number.MAX_SAFE_INTEGER);
  const limit = options.limit ?? 100;
  checkInteger(limit, 'listHookDeliveries: limit', 1, MAX_HOOK_PAGE);
  return { ...options, limit };
}

/**
 * Checks purge options.
 *
 * @param options - which rows
 * @throws InvalidInputError on a bad state, date or hook
 */
export function validatePurgeHookDeliveries(options: PurgeHookDeliveriesOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('purgeHookDeliveries takes { state, before }');
  checkState(options.state, 'purgeHookDeliveries: state');
  if (!(options.before instanceof Date) || Number.isNaN(options.before.getTime())) throw new InvalidInputError('purgeHookDeliveries: before must be a valid Date');
  if (options.hook !== undefined) checkName(options.hook, 'purgeHookDeliveries: hook', MAX_HOOK_NAME_LENGTH);
}

/**
 * Checks a delivery id.
 *
 * @param id - the id
 * @param what - the call, for the message
 * @throws InvalidInputError when it is not a non-empty string of at most 200 characters
 */
export function validateHookDeliveryId(id: string, what: string): void {
  checkName(id, `${what}: id`, MAX_HOOK_NAME_LENGTH);
}

function checkName(value: unknown, what: string, max: number): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw new InvalidInputError(`${what} must be a non-empty string of at most ${max} characters`);
  }
}

function checkInteger(value: unknown, what: string, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(`${what} must be an integer from ${min} to ${max}, got ${typeof value === 'number' ? value : typeof value}`);
  }
}

function checkState(value: unknown, what: string): void {
  if (value !== 'pending' && value !== 'dead') throw new InvalidInputError(`${what} must be 'pending' or 'dead'`);
}
