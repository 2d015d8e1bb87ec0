/**
 * The status hook deliveries written by the database itself (HookSubscriptions): triggers on the tasks and attempt
 * tables insert one outbox row per subscribed hook in the transaction of each state change, so that no change is
 * committed without its deliveries, whoever wrote it. The rules are those of `HookSubscriptions` in
 * `@horae/storage`; the body is the JSON a `StatusHookPayload` serializes to (same keys, same order, compact).
 */
import { MAX_ERROR_MESSAGE_LENGTH } from '@horae/storage';

/** The outbox rows' times: the statement's start on the database clock, at millisecond precision (as the outbox's). */
const NOW = `date_trunc('milliseconds', statement_timestamp())`;

/**
 * Migration 8, given the quoted schema name: the subscriptions table, the body builder, the trigger functions, and
 * `hook_subscribe` / `hook_unsubscribe`, which change the subscriptions and create the triggers with the first one
 * and drop them with the last, in one transaction under an advisory lock (so that two nodes subscribing at once
 * create them once). While nothing is subscribed the triggers do not exist, and the transitions pay nothing for them
 * (idle statement-level triggers cost 12–15% of a drain: their transition tables are filled whether used or not).
 *
 * - `hook_body` builds a body by concatenation (json_build_object would put spaces in, jsonb would reorder the keys).
 * - Creations and run starts and ends are statement-level triggers over transition tables: one call per statement
 *   (a grouped start or Done of many runs is one).
 * - Cancels and failures without a started run are row-level with a WHEN on the row, so the hot transitions
 *   (claims, Done) never call it.
 * - The attempt triggers read the tasks: they fire at the end of the statement, which sees the task rows its own
 *   CTEs wrote (every transition writes the task and its attempt record in one statement).
 */
export function hookSubscriptionsMigration(s: string): string {
  /** One pending row per subscribed hook of each change `from` yields, in `order` then hook-name order. */
  const enqueue = (select: string, from: string, order: string, where = ''): string => `
      INSERT INTO ${s}.hook_outbox (id, hook, task_id, body, state, attempts, next_attempt_at, created_at, updated_at)
      SELECT gen_random_uuid()::text, h.hook, ${order === '' ? 'NEW.id' : 't.id'}, ${select}, 'pending', 0, ${NOW}, ${NOW}, ${NOW}
      FROM ${from} CROSS JOIN ${s}.hook_subscriptions h ${where} ORDER BY ${order === '' ? '' : `${order}, `}h.hook;`;
  /** The body of the change of task row `t` (after the change). */
  const body = (t: string, from: string, to: string, error: string): string =>
    `${s}.hook_body(${t}.id, ${t}.work_id, ${from}, ${to}, ${t}.attempt, ${t}.updated_at, ${error})`;
  /** The schema's quoted name as a string literal (the advisory lock's key, the regclass of the check). */
  const named = `'${s.replace(/'/g, "''")}'`;
  /** The triggers, created by the first subscription (hook_subscribe) and dropped with the last. */
  const triggers = [
    `CREATE TRIGGER tasks_hooks_created AFTER INSERT ON ${s}.tasks
            REFERENCING NEW TABLE AS created_tasks FOR EACH STATEMENT EXECUTE FUNCTION ${s}.hooks_task_created();`,
    `CREATE TRIGGER tasks_hooks_ended AFTER UPDATE ON ${s}.tasks FOR EACH ROW
            WHEN (OLD.state IN ('Initialized', 'Working')
              AND (NEW.state = 'Cancelled' OR (NEW.state = 'Failed' AND NOT (OLD.state = 'Working' AND OLD.lease_started))))
            EXECUTE FUNCTION ${s}.hooks_task_ended();`,
    `CREATE TRIGGER task_attempts_hooks_started AFTER INSERT ON ${s}.task_attempts
            REFERENCING NEW TABLE AS started_runs FOR EACH STATEMENT EXECUTE FUNCTION ${s}.hooks_run_started();`,
    `CREATE TRIGGER task_attempts_hooks_ended AFTER UPDATE ON ${s}.task_attempts
            REFERENCING OLD TABLE AS ran_runs NEW TABLE AS ended_runs FOR EACH STATEMENT EXECUTE FUNCTION ${s}.hooks_run_ended();`,
  ];
  return `
      -- The hooks whose deliveries the triggers below write, for every change by any client.
      CREATE TABLE ${s}.hook_subscriptions (
        hook        text        PRIMARY KEY,
        created_at  timestamptz NOT NULL
      );
      CREATE FUNCTION ${s}.hook_body(task_id text, work_id text, from_state text, to_state text, attempt integer,
          at timestamptz, error jsonb) RETURNS text LANGUAGE sql STABLE AS $fn$
        SELECT '{"taskId":' || to_json(task_id)::text || ',"workId":' || to_json(work_id)::text
          || ',"from":' || coalesce(to_json(from_state)::text, 'null') || ',"to":' || to_json(to_state)::text
          || ',"attempt":' || attempt::text
          || ',"time":"' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"'
          || CASE WHEN jsonb_typeof(error) = 'object' THEN
               ',"error":{"message":' || to_json(left(coalesce(error->>'message', ''), ${MAX_ERROR_MESSAGE_LENGTH}))::text
               || CASE WHEN jsonb_typeof(error->'name') = 'string' THEN ',"name":' || to_json(error->>'name')::text ELSE '' END
               || CASE WHEN jsonb_typeof(error->'code') IN ('string', 'number') THEN ',"code":' || to_json(error->>'code')::text ELSE '' END
               || '}'
             ELSE '' END
          || '}'
      $fn$;

      -- null -> Initialized: tasks inserted (an insert that found its id or key taken inserts no row).
      CREATE FUNCTION ${s}.hooks_task_created() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        ${enqueue(body('t', 'NULL', `'Initialized'`, 'NULL'), 'created_tasks t', 't.insert_seq')}
        RETURN NULL;
      END $fn$;

      -- -> Cancelled from a live state, and -> Failed without a started run (a started run's end is its attempt's).
      -- Working only when its run had started: a claim ahead is still Initialized to its hooks.
      CREATE FUNCTION ${s}.hooks_task_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        ${enqueue(
          body('NEW', `CASE WHEN OLD.state = 'Working' AND OLD.lease_started THEN 'Working' ELSE 'Initialized' END`, 'NEW.state', `CASE WHEN NEW.state = 'Failed' THEN NEW.last_error END`),
          '(VALUES (1)) AS one (n)',
          '',
        )}
        RETURN NULL;
      END $fn$;

      -- Initialized -> Working: runs start (their attempt records are opened).
      CREATE FUNCTION ${s}.hooks_run_started() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        ${enqueue(body('t', `'Initialized'`, `'Working'`, 'NULL'), `started_runs r JOIN ${s}.tasks t ON t.id = r.task_id`, 't.id')}
        RETURN NULL;
      END $fn$;

      -- Working -> the task's new state: runs end (their records leave running), but not by a cancel (the task's).
      CREATE FUNCTION ${s}.hooks_run_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        ${enqueue(
          body('t', `'Working'`, 't.state', 'r.error'),
          `ended_runs r JOIN ran_runs o ON o.task_id = r.task_id AND o.run = r.run JOIN ${s}.tasks t ON t.id = r.task_id`,
          't.id',
          `WHERE o.outcome = 'running' AND r.outcome NOT IN ('running', 'cancelled') AND t.state <> 'Working'`,
        )}
        RETURN NULL;
      END $fn$;

      -- Subscribes hooks; creates the triggers when they are missing. Serialized with unsubscribes by an advisory lock.
      CREATE FUNCTION ${s}.hook_subscribe(hooks text[]) RETURNS void LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('horae:hook-triggers:' || ${named}, 0));
        INSERT INTO ${s}.hook_subscriptions (hook, created_at)
          SELECT DISTINCT h, ${NOW} FROM unnest(hooks) AS h ON CONFLICT (hook) DO NOTHING;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = (${named} || '.tasks')::regclass AND tgname = 'tasks_hooks_created') THEN
          ${triggers.join('\n          ')}
        END IF;
      END $fn$;

      -- Unsubscribes hooks; drops the triggers with the last subscription. Returns how many were removed.
      CREATE FUNCTION ${s}.hook_unsubscribe(hooks text[]) RETURNS integer LANGUAGE plpgsql AS $fn$
      DECLARE
        removed integer;
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('horae:hook-triggers:' || ${named}, 0));
        DELETE FROM ${s}.hook_subscriptions WHERE hook = ANY(hooks);
        GET DIAGNOSTICS removed = ROW_COUNT;
        IF NOT EXISTS (SELECT 1 FROM ${s}.hook_subscriptions) THEN
          DROP TRIGGER IF EXISTS tasks_hooks_created ON ${s}.tasks;
          DROP TRIGGER IF EXISTS tasks_hooks_ended ON ${s}.tasks;
          DROP TRIGGER IF EXISTS task_attempts_hooks_started ON ${s}.task_attempts;
          DROP TRIGGER IF EXISTS task_attempts_hooks_ended ON ${s}.task_attempts;
        END IF;
        RETURN removed;
      END $fn$;
  `;
}
