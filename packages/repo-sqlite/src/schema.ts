/**
 * The schema of the SQLite adapter, as an ordered list of migrations, and the runner that brings a database
 * file up to date. The version lives in the `horae_meta` table (not `PRAGMA user_version`, which belongs to
 * whoever owns the file when the caller shares one database with their own tables).
 */
import { InvalidInputError } from '@horae/core';
import { SchemaVersionError } from '@horae/storage';
import type { SqliteDatabase } from './driver.js';
import { V8_HOOK_SUBSCRIPTIONS } from './hook-triggers.js';

/** One step of the schema: applied once, in order, inside the migration transaction. */
export interface Migration {
  /** Its position in the list, starting at 1; the schema version once it has been applied. */
  readonly version: number;
  /** What it changes, for people reading the list. */
  readonly description: string;
  /** Applies the change; runs inside a transaction, so a failure leaves the database as it was. */
  up(db: SqliteDatabase): void;
}

/** What {@link migrate} did. */
export interface MigrationResult {
  /** The version found in the database (0 for a fresh one). */
  from: number;
  /** The version it holds now. */
  to: number;
}

/** The table that holds the schema version and the change counter. */
export const META_TABLE = 'horae_meta';
/** The table of tasks. */
export const TASKS_TABLE = 'horae_tasks';
/** The table of execution history: one row per run of a task. */
export const ATTEMPTS_TABLE = 'horae_task_attempts';
/** The key of the schema version in {@link META_TABLE}. */
export const SCHEMA_VERSION_KEY = 'schema_version';
/** The key of the change counter in {@link META_TABLE}: the last `change_seq` handed out. */
export const CHANGE_SEQ_KEY = 'change_seq';

const V1_TASKS = `
CREATE TABLE horae_tasks (
  id            TEXT    NOT NULL PRIMARY KEY,
  work_id       TEXT    NOT NULL,
  param         TEXT    NOT NULL,
  scheduled_at  INTEGER NOT NULL,
  state         TEXT    NOT NULL CHECK (state IN ('Initialized', 'Working', 'Done', 'Cancelled', 'Failed')),
  priority      REAL    NOT NULL,
  attempt       INTEGER NOT NULL,
  max_attempts  INTEGER NOT NULL,
  lease_owner   TEXT,
  lease_until   INTEGER,
  lease_token   TEXT,
  last_error    TEXT,
  unique_key    TEXT,
  progress      TEXT,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  change_seq    INTEGER NOT NULL
);
INSERT INTO horae_meta (key, value) VALUES ('change_seq', 0);
-- The exact change cursor: every write sets change_seq from the counter in the same transaction.
CREATE UNIQUE INDEX horae_tasks_change_seq ON horae_tasks (change_seq);
-- One live task per uniqueKey: terminal rows leave the index, which frees the key.
CREATE UNIQUE INDEX horae_tasks_unique_key ON horae_tasks (unique_key)
  WHERE unique_key IS NOT NULL AND state IN ('Initialized', 'Working');
-- claimDue: Initialized rows in claim order. Partial indexes only hold the rows of one state, so a
-- transition touches the indexes of the states it leaves and enters, not all of them.
CREATE INDEX horae_tasks_claim ON horae_tasks (priority DESC, scheduled_at, created_at, id)
  WHERE state = 'Initialized';
-- listDue: Initialized rows by due time.
CREATE INDEX horae_tasks_due ON horae_tasks (scheduled_at, id) WHERE state = 'Initialized';
-- reclaimExpired: Working rows by lease expiry.
CREATE INDEX horae_tasks_lease ON horae_tasks (lease_until, id) WHERE state = 'Working';
`;

const V2_OPERATOR_INDEXES = `
-- list(): all tasks, by state, by work, in creation order.
CREATE INDEX horae_tasks_created ON horae_tasks (created_at, id);
CREATE INDEX horae_tasks_state_created ON horae_tasks (state, created_at, id);
CREATE INDEX horae_tasks_work_created ON horae_tasks (work_id, created_at, id);
-- deleteTerminalBefore: ended rows by their last change.
CREATE INDEX horae_tasks_ended ON horae_tasks (updated_at)
  WHERE state IN ('Done', 'Cancelled', 'Failed');
`;

const V3_SCHEDULES = `
-- Recurring schedules (the ScheduleStore capability). spec is JSON text: {"cron","timezone"} or
-- {"everyMs","anchor"} with anchor in epoch ms.
CREATE TABLE horae_schedules (
  name                TEXT    NOT NULL PRIMARY KEY,
  spec                TEXT    NOT NULL,
  work_id             TEXT    NOT NULL,
  param               TEXT    NOT NULL,
  priority            REAL    NOT NULL,
  max_attempts        INTEGER NOT NULL,
  catch_up            TEXT    NOT NULL,
  max_catch_up        INTEGER NOT NULL,
  overlap             TEXT    NOT NULL,
  paused              INTEGER NOT NULL,
  last_occurrence_at  INTEGER,
  last_task_id        TEXT,
  next_run_at         INTEGER,
  created_at          INTEGER NOT NULL,
  updated_at          INTEGER NOT NULL,
  version             INTEGER NOT NULL
);
-- listSchedules({ dueBy }): the schedules that can fire, by due time.
CREATE INDEX horae_schedules_due ON horae_schedules (next_run_at, name) WHERE paused = 0 AND next_run_at IS NOT NULL;
`;

const V4_HISTORY_AND_KINDS = `
-- Task kinds: rows from before this version were all scheduled at a time, outside any schedule.
ALTER TABLE horae_tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'scheduled' CHECK (kind IN ('immediate', 'scheduled', 'periodic'));
ALTER TABLE horae_tasks ADD COLUMN schedule_name TEXT;
-- The runs recorded so far: a claim increments it and opens the attempt row numbered by it, so the
-- attempt of a Working task is found by its primary key. Rows from before this version have no history.
ALTER TABLE horae_tasks ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
-- Execution history, written in the transaction of the transition it records. check_ins is a JSON array
-- of {"at" (epoch ms), "message"}, the latest 50. The primary key (task_id, run) serves listAttempts and
-- the close of the running attempt; WITHOUT ROWID keeps one B-tree. The foreign key cascades on a
-- connection that enables foreign keys; the adapter also deletes attempts explicitly, since a connection
-- handed in by a caller may not.
CREATE TABLE horae_task_attempts (
  task_id     TEXT    NOT NULL REFERENCES horae_tasks (id) ON DELETE CASCADE,
  run         INTEGER NOT NULL,
  attempt     INTEGER NOT NULL,
  node        TEXT    NOT NULL,
  started_at  INTEGER NOT NULL,
  ended_at    INTEGER,
  outcome     TEXT    NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'retried', 'released', 'cancelled', 'lease-expired')),
  error       TEXT,
  check_ins   TEXT    NOT NULL DEFAULT '[]',
  PRIMARY KEY (task_id, run)
) WITHOUT ROWID;
`;

const V5_WORK_LIMITS = `
-- Work limits (claimWithinLimit, claimDueWithinLimits): the Working rows of one work, counted in the claim's
-- transaction. Partial: only Working rows, so the index stays as small as the number of running tasks.
CREATE INDEX horae_tasks_working_work ON horae_tasks (work_id) WHERE state = 'Working';
`;

const V6_CLAIMS_APART_FROM_ATTEMPTS = `
-- Claims are not attempts: claims counts every claim (the fencing token handed to works; it only grows),
-- unstarted_claims the claims in a row whose lease expired before their run started (a poison task at the limit),
-- lease_started whether the run of the current claim has started (meaningful while Working; left as it was when a
-- task leaves Working, so that the RETURNING of that transition still says whether a run ended).
ALTER TABLE horae_tasks ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
ALTER TABLE horae_tasks ADD COLUMN unstarted_claims INTEGER NOT NULL DEFAULT 0;
ALTER TABLE horae_tasks ADD COLUMN lease_started INTEGER NOT NULL DEFAULT 0;
-- Before this version every claim started its run at once: a task was claimed as many times as it counted attempts
-- (a lower bound where attempts were refunded), and a Working task's run has started. The change numbers are left
-- alone: no task changed.
UPDATE horae_tasks SET claims = attempt, lease_started = CASE WHEN state = 'Working' THEN 1 ELSE 0 END;
-- claimDue's aged order at the default agingMs (10 s): priority + waited / 10000 orders as priority * 10000 -
-- scheduled_at, which does not depend on the time. The expression must stay the text of AGED_KEY in statements.ts.
CREATE INDEX horae_tasks_aged ON horae_tasks (priority * 10000 - scheduled_at DESC, scheduled_at, created_at, id)
  WHERE state = 'Initialized';
`;

const V7_HOOK_OUTBOX = `
-- Status hook deliveries not yet made (the HookOutbox capability): one row per change and hook. seq is the enqueue
-- order (AUTOINCREMENT: never reused, so it only grows); delivered rows are deleted, dead letters kept until purged.
CREATE TABLE horae_hook_outbox (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  id               TEXT    NOT NULL UNIQUE,
  hook             TEXT    NOT NULL,
  task_id          TEXT    NOT NULL,
  body             TEXT    NOT NULL,
  state            TEXT    NOT NULL CHECK (state IN ('pending', 'dead')),
  attempts         INTEGER NOT NULL,
  next_attempt_at  INTEGER NOT NULL,
  lease_token      TEXT,
  lease_until      INTEGER,
  last_error       TEXT,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);
-- claimHookDeliveries: pending rows of a hook in seq order, and the per-task check (an earlier pending row of the
-- same hook and task holds the later ones back).
CREATE INDEX horae_hook_outbox_pending ON horae_hook_outbox (hook, seq) WHERE state = 'pending';
CREATE INDEX horae_hook_outbox_task ON horae_hook_outbox (hook, task_id, seq) WHERE state = 'pending';
-- purgeHookDeliveries and listHookDeliveries({ state }): rows of one state by age.
CREATE INDEX horae_hook_outbox_state ON horae_hook_outbox (state, updated_at);
`;

/** The migrations of this version of the adapter, in order; the schema version is their count. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'the tasks table, the change counter and the indexes of the state machine', up: (db) => db.exec(V1_TASKS) },
  { version: 2, description: 'the indexes of list() and deleteTerminalBefore()', up: (db) => db.exec(V2_OPERATOR_INDEXES) },
  { version: 3, description: 'the table of recurring schedules', up: (db) => db.exec(V3_SCHEDULES) },
  { version: 4, description: 'task kinds and schedule names, and the execution history table', up: (db) => db.exec(V4_HISTORY_AND_KINDS) },
  { version: 5, description: 'the index of per-work concurrency limits', up: (db) => db.exec(V5_WORK_LIMITS) },
  { version: 6, description: 'claims apart from attempts (claims, unstarted_claims, lease_started) and the aged claim index', up: (db) => db.exec(V6_CLAIMS_APART_FROM_ATTEMPTS) },
  { version: 7, description: 'the status hook outbox', up: (db) => db.exec(V7_HOOK_OUTBOX) },
  { version: 8, description: 'hook subscriptions: deliveries written by triggers in the transaction of each change', up: (db) => db.exec(V8_HOOK_SUBSCRIPTIONS) },
];

/** The newest schema version this adapter understands. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Reads the schema version stored in `db`.
 *
 * @param db - an open database
 * @returns the version, or 0 when the database holds no Horae schema yet
 */
export function readSchemaVersion(db: SqliteDatabase): number {
  const table = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(META_TABLE);
  if (table === undefined) return 0;
  const row = db.prepare(`SELECT value FROM ${META_TABLE} WHERE key = ?`).get(SCHEMA_VERSION_KEY) as { value: number } | undefined;
  return row === undefined ? 0 : Number(row.value);
}

function checkMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((migration, i) => {
    if (migration.version !== i + 1) throw new InvalidInputError(`migration #${i} has version ${migration.version}, expected ${i + 1}: versions run 1, 2, 3… in order`);
  });
}

/**
 * Brings `db` up to the newest version of `migrations`: applies the missing ones in order, then stores the
 * version, all in one `BEGIN IMMEDIATE` transaction.
 *
 * Rules: a database already up to date is not written to; a database whose version is newer than
 * `migrations` knows is refused and left untouched; of processes migrating one file at once, exactly one
 * applies each migration (the others wait for its lock, then find the work done); a failing migration rolls
 * back every change of the run.
 *
 * @param db - an open database, not inside a transaction
 * @param migrations - the list to apply; the adapter's own by default
 * @returns the version found and the version reached
 * @throws SchemaVersionError when the database's version is newer than the list
 * @throws InvalidInputError when the list's versions are not 1, 2, 3… in order
 */
export function migrate(db: SqliteDatabase, migrations: readonly Migration[] = MIGRATIONS): MigrationResult {
  checkMigrationList(migrations);
  const latest = migrations.length;
  const seen = readSchemaVersion(db);
  if (seen > latest) throw new SchemaVersionError(seen, latest);
  if (seen === latest) return { from: seen, to: seen };
  db.prepare('BEGIN IMMEDIATE').run();
  try {
    // Read again under the write lock: another process may have migrated since the first look.
    const from = readSchemaVersion(db);
    if (from > latest) throw new SchemaVersionError(from, latest);
    db.exec(`CREATE TABLE IF NOT EXISTS ${META_TABLE} (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)`);
    for (const migration of migrations.slice(from)) migration.up(db);
    db.prepare(`INSERT INTO ${META_TABLE} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(SCHEMA_VERSION_KEY, latest);
    db.prepare('COMMIT').run();
    return { from, to: latest };
  } catch (error) {
    if (db.inTransaction) db.prepare('ROLLBACK').run();
    throw error;
  }
}
