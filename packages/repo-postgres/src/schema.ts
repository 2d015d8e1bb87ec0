/**
 * The tables of a Horae schema and the versioned migrations that create them. The adapter applies them itself
 * (see {@link migrate}); several nodes starting at once are serialized by a transaction-scoped advisory lock.
 */
import { SchemaVersionError } from '@horae/storage';
import { hookSubscriptionsMigration } from './hook-triggers.js';
import type { PgPool } from './pg-types.js';
import { translateError } from './translate-error.js';

/** One step of the schema: applied once, in order, inside the migration transaction. */
export interface Migration {
  /** The version this step brings the schema to (1, 2, …). */
  version: number;
  /** A short description, stored in the migrations table. */
  name: string;
  /** The DDL, given the quoted schema name. */
  sql(schema: string): string;
}

/** The task states, as stored (a CHECK constraint keeps strangers out). */
const STATES = `'Initialized', 'Working', 'Done', 'Cancelled', 'Failed'`;
/** The task kinds, as stored. */
const KINDS = `'immediate', 'scheduled', 'periodic'`;
/** The outcomes of a run, as stored. */
const OUTCOMES = `'running', 'succeeded', 'failed', 'retried', 'released', 'cancelled', 'lease-expired'`;

/**
 * Every migration, oldest first. Never edit a released one: add a new version.
 *
 * @remarks `param` is `json`, not `jsonb`: `json` keeps the text exactly as written (key order, duplicate keys,
 * `\u0000` escapes, number spelling), so a param round-trips unchanged; it is never queried inside.
 * `change_xid`/`change_seq` order the change log (see the guide: the cursor is exact); both default on insert
 * and every update sets them back to DEFAULT.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tasks',
    sql: (s) => `
      CREATE SEQUENCE ${s}.task_change_seq;
      CREATE TABLE ${s}.tasks (
        id            text COLLATE "C" PRIMARY KEY,
        insert_seq    bigint GENERATED ALWAYS AS IDENTITY,
        work_id       text NOT NULL,
        param         json NOT NULL,
        scheduled_at  timestamptz NOT NULL,
        state         text NOT NULL CHECK (state IN (${STATES})),
        priority      double precision NOT NULL DEFAULT 0,
        attempt       integer NOT NULL DEFAULT 0,
        max_attempts  integer NOT NULL DEFAULT 1,
        lease_owner   text,
        lease_until   timestamptz,
        lease_token   text,
        last_error    jsonb,
        unique_key    text,
        progress      jsonb,
        progress_at   timestamptz,
        created_at    timestamptz NOT NULL,
        updated_at    timestamptz NOT NULL,
        change_xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
        change_seq    bigint NOT NULL DEFAULT nextval('${s}.task_change_seq')
      );
      -- While a task is live, no other task holds its key (INSERT … ON CONFLICT infers this index).
      CREATE UNIQUE INDEX tasks_unique_key ON ${s}.tasks (unique_key) WHERE state IN ('Initialized', 'Working');
      -- claimDue: highest priority first, then earliest due, then oldest.
      CREATE INDEX tasks_claim ON ${s}.tasks (priority DESC, scheduled_at, created_at, insert_seq) WHERE state = 'Initialized';
      -- listDue and the due filter of claimDue.
      CREATE INDEX tasks_due ON ${s}.tasks (scheduled_at, id) WHERE state = 'Initialized';
      -- reclaimExpired.
      CREATE INDEX tasks_lease ON ${s}.tasks (lease_until) WHERE state = 'Working';
      -- getUpdatedSince: the change log.
      CREATE INDEX tasks_change ON ${s}.tasks (change_xid, change_seq);
      -- list.
      CREATE INDEX tasks_created ON ${s}.tasks (created_at, id);
      -- deleteTerminalBefore.
      CREATE INDEX tasks_terminal ON ${s}.tasks (updated_at) WHERE state IN ('Done', 'Cancelled', 'Failed');
    `,
  },
  {
    version: 2,
    name: 'schedules',
    sql: (s) => `
      CREATE TABLE ${s}.schedules (
        name                text COLLATE "C" PRIMARY KEY,
        spec                jsonb NOT NULL,
        work_id             text NOT NULL,
        param               json NOT NULL,
        priority            double precision NOT NULL,
        max_attempts        integer NOT NULL,
        catch_up            text NOT NULL,
        max_catch_up        integer NOT NULL,
        overlap             text NOT NULL,
        paused              boolean NOT NULL DEFAULT false,
        last_occurrence_at  timestamptz,
        last_task_id        text,
        next_run_at         timestamptz,
        created_at          timestamptz NOT NULL,
        updated_at          timestamptz NOT NULL,
        version             integer NOT NULL DEFAULT 1
      );
      -- listSchedules({ dueBy }): unpaused schedules by next run.
      CREATE INDEX schedules_due ON ${s}.schedules (next_run_at, name) WHERE NOT paused AND next_run_at IS NOT NULL;
    `,
  },
  {
    version: 3,
    name: 'execution history and task kinds',
    // ADD COLUMN with a constant default rewrites nothing (PostgreSQL 11+): existing tasks read as kind
    // 'scheduled', no scheduleName, no runs, so their history is empty and their next run is run 1.
    sql: (s) => `
      ALTER TABLE ${s}.tasks
        ADD COLUMN kind text NOT NULL DEFAULT 'scheduled' CHECK (kind IN (${KINDS})),
        ADD COLUMN schedule_name text,
        ADD COLUMN runs integer NOT NULL DEFAULT 0;
      -- One row per run, written by the statement of the transition it records; deleted with its task.
      CREATE TABLE ${s}.task_attempts (
        task_id     text COLLATE "C" NOT NULL REFERENCES ${s}.tasks (id) ON DELETE CASCADE,
        run         integer NOT NULL,
        attempt     integer NOT NULL,
        node        text NOT NULL,
        started_at  timestamptz NOT NULL,
        ended_at    timestamptz,
        outcome     text NOT NULL CHECK (outcome IN (${OUTCOMES})),
        error       jsonb,
        check_ins   jsonb NOT NULL DEFAULT '[]'::jsonb,
        -- listAttempts (task_id = $1 ORDER BY run), the closing writes (task_id, run) and the cascade (task_id).
        PRIMARY KEY (task_id, run)
      );
    `,
  },
  {
    version: 4,
    name: 'per-work concurrency limits',
    // claimWithinLimit and claimDueWithinLimits count the Working tasks of a work under its advisory lock.
    // Partial: only Working rows, so it stays as small as the number of running tasks.
    sql: (s) => `
      CREATE INDEX tasks_working_work ON ${s}.tasks (work_id) WHERE state = 'Working';
    `,
  },
  {
    version: 5,
    name: 'fewer writes and checks per claim and Done',
    // Done's update of the attempt record touches no indexed column, so it is HOT (no new primary-key entry) when
    // the record's page has room for the new version: the fillfactor leaves it (on pages filled from now on).
    // The foreign key from task_attempts to tasks checked each new record with a locking look-up of its task
    // (about a tenth of the server's CPU per claim). Records are written only by the statement that claims or ends
    // their task, which holds the task's row lock, so the check never fails; what the key also did, keeping no
    // record without its task, statement-level triggers now do: every DELETE of tasks (the adapter's or one by
    // hand) deletes their records in the same statement, and a TRUNCATE of tasks empties task_attempts too.
    // Nodes of the previous version keep working against it: none of their statements names what changed.
    sql: (s) => `
      ALTER TABLE ${s}.task_attempts SET (fillfactor = 50);
      ALTER TABLE ${s}.task_attempts DROP CONSTRAINT task_attempts_task_id_fkey;
      CREATE FUNCTION ${s}.delete_task_attempts() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
          IF TG_OP = 'TRUNCATE' THEN
            TRUNCATE ${s}.task_attempts;
          ELSE
            DELETE FROM ${s}.task_attempts a USING deleted_tasks d WHERE a.task_id = d.id;
          END IF;
          RETURN NULL;
        END
      $fn$;
      CREATE TRIGGER tasks_delete_attempts AFTER DELETE ON ${s}.tasks
        REFERENCING OLD TABLE AS deleted_tasks FOR EACH STATEMENT EXECUTE FUNCTION ${s}.delete_task_attempts();
      CREATE TRIGGER tasks_truncate_attempts AFTER TRUNCATE ON ${s}.tasks
        FOR EACH STATEMENT EXECUTE FUNCTION ${s}.delete_task_attempts();
    `,
  },
  {
    version: 6,
    name: 'claims apart from attempts, and the aged claim order',
    // Claims are not attempts (DESIGN rule 11). `claims` counts every claim (the fencing token; it only grows),
    // `unstarted_claims` the claims in a row whose lease expired before their run started (a poison task at the
    // limit), `lease_started` whether the run of the current claim has started: meaningful while Working, set by
    // every claim, left alone by the transitions out of Working.
    //
    // Before this version every claim started its run at once, so a task was claimed as often as it counted
    // attempts (a lower bound where a graceful stop refunded one) and a Working task's run has started: the default
    // `true` says so for every existing row without rewriting it (a constant default, PostgreSQL 11+), and the one
    // UPDATE below copies `attempt` into `claims` where it is not 0. It leaves the change columns alone: no task
    // changed state. A new row starts `true` too, which is what a node of version 5, which never sets the column,
    // needs of the rows it claims.
    //
    // tasks_claim is rebuilt to end with the id, as the contract's tie-break does (it ended with insert_seq); it
    // serves the order by priority alone (agingMs Infinity). tasks_aged serves the default agingMs (10 s): the
    // effective priority `priority + (now − scheduled_at) / 10000`, times 10000 and less `now` (the same for every row
    // of one claim), orders as `priority × 10000 − scheduled_at` in epoch milliseconds, a key that does not depend on
    // the time, so an index can hold it. `AT TIME ZONE 'UTC'` makes the epoch immutable (the epoch of a timestamptz is
    // marked stable); the priority is clamped to ±1e300 so that no finite priority overflows the product (PostgreSQL
    // raises an error where JavaScript would give Infinity). The expression must stay the text of agedKey in
    // statements.ts: test/query-plan.test.ts fails if claimDue stops walking this index.
    //
    // Its predicate says "Initialized" as a range, `state >= 'Initialized' AND state <= 'Initialized'` (the same rows:
    // the collation is deterministic), which the aged claim states the same way. That statement then implies this
    // index's predicate and no other's (`state = 'Initialized'` of tasks_due and tasks_claim is not implied by the
    // range), so the planner cannot read the due rows through another index and sort them: with statistics taken
    // before a backlog arrived (they say no row is Initialized) it did, sorting the whole backlog at every claim. Its
    // other choice, a scan of the whole table, costs more than this walk whenever the table is big enough to matter.
    sql: (s) => `
      ALTER TABLE ${s}.tasks
        ADD COLUMN claims integer NOT NULL DEFAULT 0,
        ADD COLUMN unstarted_claims integer NOT NULL DEFAULT 0,
        ADD COLUMN lease_started boolean NOT NULL DEFAULT true;
      UPDATE ${s}.tasks SET claims = attempt WHERE attempt <> 0;
      DROP INDEX ${s}.tasks_claim;
      CREATE INDEX tasks_claim ON ${s}.tasks (priority DESC, scheduled_at, created_at, id) WHERE state = 'Initialized';
      CREATE INDEX tasks_aged ON ${s}.tasks (
        (least(greatest(priority, '-1e300'::float8), '1e300'::float8) * 10000 - (extract(epoch FROM scheduled_at AT TIME ZONE 'UTC') * 1000)::float8) DESC,
        scheduled_at, created_at, id
      ) WHERE state >= 'Initialized' AND state <= 'Initialized';
    `,
  },
  {
    version: 7,
    name: 'the status hook outbox',
    // Status hook deliveries not yet made (the HookOutbox capability): one row per change and hook, delivered rows
    // deleted, dead letters kept until purged. seq is the enqueue order. body is text, not json: it is POSTed byte
    // for byte as stored. hook_outbox_pending serves the claim (a hook's pending rows in seq order) and
    // hook_outbox_task its per-task check (an earlier pending row of the same hook and task holds the later back).
    sql: (s) => `
      CREATE TABLE ${s}.hook_outbox (
        seq              bigserial   PRIMARY KEY,
        id               text        NOT NULL UNIQUE,
        hook             text        NOT NULL,
        task_id          text        NOT NULL,
        body             text        NOT NULL,
        state            text        NOT NULL CHECK (state IN ('pending', 'dead')),
        attempts         integer     NOT NULL,
        next_attempt_at  timestamptz NOT NULL,
        lease_token      text,
        lease_until      timestamptz,
        last_error       text,
        created_at       timestamptz NOT NULL,
        updated_at       timestamptz NOT NULL
      );
      CREATE INDEX hook_outbox_pending ON ${s}.hook_outbox (hook, seq) WHERE state = 'pending';
      CREATE INDEX hook_outbox_task ON ${s}.hook_outbox (hook, task_id, seq) WHERE state = 'pending';
      CREATE INDEX hook_outbox_state ON ${s}.hook_outbox (state, updated_at);
    `,
  },
  {
    version: 8,
    name: 'hook subscriptions',
    // Deliveries written by triggers in the transaction of each change, for the subscribed hooks (HookSubscriptions):
    // a change is never committed without them. See hook-triggers.ts.
    sql: (s) => hookSubscriptionsMigration(s),
  },
];

/** The newest schema version this adapter knows. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Brings the schema up to {@link SCHEMA_VERSION}: creates it when missing and applies the migrations it lacks,
 * in one transaction.
 *
 * Rule: of several nodes migrating at once, one applies each step and the others wait for it
 * (`pg_advisory_xact_lock` on a key derived from the schema name), then find nothing left to do.
 *
 * @param pool - where to run
 * @param schema - the unquoted schema name
 * @param migrations - the steps to apply, oldest first (tests pass their own)
 * @returns the schema version found before migrating (0: a new schema)
 * @throws SchemaVersionError when the database holds a newer version than this adapter knows; nothing is changed
 * @throws RepositoryError when the database fails
 */
export async function migrate(pool: PgPool, schema: string, migrations: readonly Migration[] = MIGRATIONS): Promise<number> {
  const s = quoteIdent(schema);
  const supported = migrations[migrations.length - 1]?.version ?? 0;
  let client;
  try {
    client = await pool.connect();
  } catch (error) {
    throw translateError(error, 'connect to PostgreSQL');
  }
  let broken = false;
  try {
    await client.query({ text: 'BEGIN' });
    await client.query({ text: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, values: [`horae:migrate:${schema}`] });
    await client.query({ text: `CREATE SCHEMA IF NOT EXISTS ${s}` });
    await client.query({
      text: `CREATE TABLE IF NOT EXISTS ${s}.horae_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    });
    const found = await client.query({ text: `SELECT coalesce(max(version), 0) AS version FROM ${s}.horae_migrations` });
    const current = Number(found.rows[0]?.version ?? 0);
    if (current > supported) throw new SchemaVersionError(current, supported);
    for (const migration of migrations) {
      if (migration.version <= current) continue;
      await client.query({ text: migration.sql(s) });
      await client.query({ text: `INSERT INTO ${s}.horae_migrations (version, name) VALUES ($1, $2)`, values: [migration.version, migration.name] });
    }
    await client.query({ text: 'COMMIT' });
    return current;
  } catch (error) {
    try {
      await client.query({ text: 'ROLLBACK' });
    } catch {
      broken = true;
    }
    throw translateError(error, `migrate the Horae schema ${schema}`);
  } finally {
    client.release(broken);
  }
}
