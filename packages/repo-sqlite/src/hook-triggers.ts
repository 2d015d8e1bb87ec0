/**
 * The status hook deliveries written by the database itself (HookSubscriptions): triggers on the tasks and attempt
 * tables insert one outbox row per subscribed hook in the transaction of each state change, so that no change is
 * committed without its deliveries, whoever wrote it. The rules are those of `HookSubscriptions` in
 * `@horae/storage`; the body is the JSON a `StatusHookPayload` serializes to (same keys, same order).
 */
import { MAX_ERROR_MESSAGE_LENGTH } from '@horae/storage';

/** The table of subscribed hook names. */
export const HOOK_SUBSCRIPTIONS_TABLE = 'horae_hook_subscriptions';

/** ISO 8601 in UTC with milliseconds, from epoch ms (integer arithmetic: no floating-point rounding of the ms). */
function isoTime(ms: string): string {
  return `strftime('%Y-%m-%dT%H:%M:%S', ${ms} / 1000, 'unixepoch') || printf('.%03dZ', ${ms} % 1000)`;
}

/** The error as a hook sends it (message, then name and code when they are a string / a string or number): JSON text. */
function errorInfo(error: string): string {
  return `json_patch(json_object('message', substr(json_extract(${error}, '$.message'), 1, ${MAX_ERROR_MESSAGE_LENGTH})),
    json_object('name', CASE WHEN json_type(${error}, '$.name') = 'text' THEN json_extract(${error}, '$.name') END,
                'code', CASE WHEN json_type(${error}, '$.code') IN ('text', 'integer', 'real') THEN CAST(json_extract(${error}, '$.code') AS TEXT) END))`;
}

/**
 * The body of one change of task row `t` (after the change): `from` and `to` are SQL expressions; `error` one of a
 * stored TaskError's JSON text, or omitted when the change carries none. json_patch drops the null name and code;
 * json_set appends `error` last, as the payload's key order has it.
 */
function body(t: string, from: string, to: string, error?: string): string {
  const base = `json_object('taskId', ${t}.id, 'workId', ${t}.work_id, 'from', ${from}, 'to', ${to}, 'attempt', ${t}.attempt, 'time', ${isoTime(`${t}.updated_at`)})`;
  if (error === undefined) return base;
  return `CASE WHEN json_valid(${error}) AND json_type(${error}) = 'object' THEN json_set(${base}, '$.error', json(${errorInfo(error)})) ELSE ${base} END`;
}

/** One pending row per subscribed hook, in hook-name order, due at the change's time; ids random. */
function enqueue(select: string, from: string, where = ''): string {
  return `INSERT INTO horae_hook_outbox (id, hook, task_id, body, state, attempts, next_attempt_at, created_at, updated_at)
    SELECT lower(hex(randomblob(16))), s.hook, t.id, ${select}, 'pending', 0, t.updated_at, t.updated_at, t.updated_at
    FROM ${from}, ${HOOK_SUBSCRIPTIONS_TABLE} s ${where} ORDER BY s.hook;`;
}

/** The state a task was in for its hooks: Working only when its run had started (a claim ahead is still Initialized). */
const OLD_STATE = `CASE WHEN OLD.state = 'Working' AND OLD.lease_started = 1 THEN 'Working' ELSE 'Initialized' END`;

/**
 * Migration 8: the subscriptions table. The triggers are not part of it: they exist only while a hook is subscribed
 * ({@link HOOK_TRIGGERS}, created by the first subscription and dropped with the last), so that a database without
 * hooks pays nothing for them on its transitions.
 */
export const V8_HOOK_SUBSCRIPTIONS = `
-- The hooks whose deliveries the hook triggers write, for every change by any client.
CREATE TABLE ${HOOK_SUBSCRIPTIONS_TABLE} (
  hook        TEXT    NOT NULL PRIMARY KEY,
  created_at  INTEGER NOT NULL
);
`;

/**
 * The triggers that write the deliveries, created (if missing) in the transaction of a subscription. Their names
 * carry the version of their text: a later version that changes them creates new names and drops these.
 * The attempt triggers read the task row: every transition writes the task before its attempt record, in one
 * transaction, so the row they read is the one after the change.
 */
export const HOOK_TRIGGERS: readonly string[] = [
  // null -> Initialized: a task inserted (INSERT OR IGNORE of a taken id or key inserts nothing, so fires nothing).
  `CREATE TRIGGER IF NOT EXISTS horae_hooks_v1_task_created AFTER INSERT ON horae_tasks
   BEGIN
     ${enqueue(body('t', 'NULL', `'Initialized'`), 'horae_tasks t', 'WHERE t.id = NEW.id')}
   END`,
  // -> Cancelled from a live state, and -> Failed without a started run (a started run's end is its attempt's).
  `CREATE TRIGGER IF NOT EXISTS horae_hooks_v1_task_ended AFTER UPDATE OF state ON horae_tasks
     WHEN OLD.state IN ('Initialized', 'Working')
      AND (NEW.state = 'Cancelled' OR (NEW.state = 'Failed' AND NOT (OLD.state = 'Working' AND OLD.lease_started = 1)))
   BEGIN
     ${enqueue(body('t', OLD_STATE, 'NEW.state', `CASE WHEN NEW.state = 'Failed' THEN NEW.last_error END`), 'horae_tasks t', 'WHERE t.id = NEW.id')}
   END`,
  // Initialized -> Working: a run starts (its attempt record is opened).
  `CREATE TRIGGER IF NOT EXISTS horae_hooks_v1_run_started AFTER INSERT ON horae_task_attempts
   BEGIN
     ${enqueue(body('t', `'Initialized'`, `'Working'`), 'horae_tasks t', 'WHERE t.id = NEW.task_id')}
   END`,
  // Working -> the task's new state: a run ends (its record leaves running), but not by a cancel (the task's trigger).
  `CREATE TRIGGER IF NOT EXISTS horae_hooks_v1_run_ended AFTER UPDATE OF outcome ON horae_task_attempts
     WHEN OLD.outcome = 'running' AND NEW.outcome NOT IN ('running', 'cancelled')
   BEGIN
     ${enqueue(body('t', `'Working'`, 't.state', 'NEW.error'), 'horae_tasks t', `WHERE t.id = NEW.task_id AND t.state <> 'Working'`)}
   END`,
];

/** Drops the triggers of {@link HOOK_TRIGGERS}, when the last subscription goes. */
export const DROP_HOOK_TRIGGERS: readonly string[] = ['task_created', 'task_ended', 'run_started', 'run_ended'].map(
  (name) => `DROP TRIGGER IF EXISTS horae_hooks_v1_${name}`,
);
