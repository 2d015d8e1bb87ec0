/**
 * Every SQL statement the repository runs, prepared once per instance. Parameters are named (`@id`), so a
 * test can explain each one with the same parameter object.
 */
import type { SqliteDatabase, SqliteStatement } from './driver.js';
import { TASK_ROW_COLUMNS } from './row-mapping.js';

// lease_started is left as it was: the RETURNING of a transition out of Working then says whether a run ended (and has
// an attempt record to close). It means nothing outside Working, and every claim sets it.
const CLEAR_LEASE = 'lease_owner = NULL, lease_until = NULL, lease_token = NULL';
// updatedAt never goes below createdAt, even when the clock stepped back since the insert.
const STAMP = 'updated_at = MAX(@now, created_at), change_seq = @seq';
const HELD = `state = 'Working' AND lease_token = @token`;
// The ends of a run (Done, Failed under a lease) need a run that started: a claim ahead is started first.
const STARTED = `${HELD} AND lease_started = 1`;
const LEVEL_ORDER = 'ORDER BY priority DESC, scheduled_at, created_at, id';
/**
 * The aged claim key of the default agingMs (10 s, the core Dispatcher's): `priority + (now − scheduled_at) / 10000`,
 * times 10000, less `now` (the same for every row of one claim), orders as `priority * 10000 - scheduled_at`, a key
 * that does not depend on the time, so an index can hold it (horae_tasks_aged, schema version 6). The text must be
 * the index's expression exactly: SQLite matches an indexed expression by its text, and with any other (even of equal
 * value) it would read the whole due range and sort it (query-plan.test.ts checks the plan).
 */
export const AGED_KEY = 'priority * 10000 - scheduled_at';
/** The agingMs whose order {@link AGED_KEY} serves. */
export const INDEXED_AGING_MS = 10_000;
const AGED_ORDER = `ORDER BY ${AGED_KEY} DESC, scheduled_at, created_at, id`;
// INDEXED BY pins the partial index of the state a hot query reads: without statistics the planner would
// pick the (state, created_at) index and sort, and a dropped index fails loudly here instead of going slow.
const CLAIM_INDEX = 'horae_tasks INDEXED BY horae_tasks_claim';
const AGED_INDEX = 'horae_tasks INDEXED BY horae_tasks_aged';
// Optional filters of a claim of due rows: only the works of @workIds (a JSON array, or NULL for every work), leaving out
// those of @exclude (a JSON array: the works whose limit is reached).
const WORK_FILTER = `AND (@workIds IS NULL OR work_id IN (SELECT value FROM json_each(@workIds))) AND work_id NOT IN (SELECT value FROM json_each(@exclude))`;
const NEW_LEASE = `state = 'Working', lease_owner = @owner, lease_until = @until, lease_token = @newToken, claims = claims + 1, progress = NULL`;
// A claim by id starts its run in the same write: the attempt counts, and the run gets the next run number.
const START = 'lease_started = 1, unstarted_claims = 0, attempt = attempt + 1, runs = runs + 1';
const CLAIM_SET = `${NEW_LEASE}, ${START}, ${STAMP}`;
// A claim ahead (claimDue): no attempt and no run until markAsStarted.
const CLAIM_AHEAD_SET = `${NEW_LEASE}, lease_started = 0, ${STAMP}`;
// Due by the repository's clock (@now), which the claim checks again here: the compare-and-set holds it all.
const CLAIM_WHERE = `id = @id AND state = 'Initialized' AND scheduled_at <= @now AND (@ifScheduledAt IS NULL OR scheduled_at = @ifScheduledAt)`;
const DONE_SET = `state = 'Done', ${CLEAR_LEASE}, ${STAMP}`;

/** The statements that return their own rows as arrays (`raw`): the columns in {@link TASK_ROW_COLUMNS} order. */
const RAW_STATEMENTS: ReadonlySet<StatementName> = new Set<StatementName>(['rowForWrite', 'selectDue', 'selectDueFiltered', 'selectDueAged', 'selectDueAgedFiltered']);
/** The columns of a whole row, in {@link TASK_ROW_COLUMNS} order. */
const ROW = TASK_ROW_COLUMNS.join(', ');

/** The SQL of every statement, by name. */
export const STATEMENT_SQL = {
  getById: 'SELECT * FROM horae_tasks WHERE id = @id',
  liveByUniqueKey: `SELECT * FROM horae_tasks WHERE unique_key = @uniqueKey AND state IN ('Initialized', 'Working')`,
  insert: `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, unique_key, created_at, updated_at, change_seq,
      kind, schedule_name, runs)
    VALUES (@id, @workId, @param, @scheduledAt, 'Initialized', @priority, 0, @maxAttempts, @uniqueKey, @now, @now, @seq, @kind, @scheduleName, 0)`,
  // The row-returning forms of the claim and of Done (not run by the repository, which reads the row first, below;
  // bench/durable.mjs's raw baseline runs them).
  claim: `UPDATE horae_tasks SET ${CLAIM_SET} WHERE ${CLAIM_WHERE} RETURNING *`,
  // The hot transitions read the row first, in their transaction (one primary-key look-up, returned as an array),
  // then write without RETURNING and build the new row in JS: in SQLite, RETURNING buffers its rows in an
  // ephemeral table and builds an object per row, which costs more than the read. The WHERE clause still holds
  // the whole compare-and-set.
  rowForWrite: `SELECT ${ROW} FROM horae_tasks WHERE id = @id`,
  claimKnown: `UPDATE horae_tasks SET ${CLAIM_SET} WHERE ${CLAIM_WHERE}`,
  claimAheadKnown: `UPDATE horae_tasks SET ${CLAIM_AHEAD_SET} WHERE ${CLAIM_WHERE}`,
  // markAsStarted: the run of a claim ahead starts. The …IfUnchanged form is for a row this repository claimed
  // (KnownRows), as markAsDoneIfUnchanged below; the other follows a read of the row.
  // A run never starts on an expired lease (the start is refused, any node may reclaim the task): lease_until > @now.
  startKnown: `UPDATE horae_tasks SET ${START}, ${STAMP} WHERE id = @id AND ${HELD} AND lease_started = 0 AND lease_until > @now`,
  startIfUnchanged: `UPDATE horae_tasks SET ${START}, ${STAMP} WHERE id = @id AND change_seq = @knownSeq AND ${HELD} AND lease_started = 0 AND lease_until > @now`,
  markAsDoneKnown: `UPDATE horae_tasks SET ${DONE_SET} WHERE id = @id AND ${STARTED}`,
  // markAsDone of a row this repository claimed (KnownRows): no read at all. Every write of a row sets a new
  // change_seq, so an unchanged @knownSeq proves the remembered row is the stored one; otherwise nothing changes and
  // the repository reads the row (markAsDoneKnown).
  markAsDoneIfUnchanged: `UPDATE horae_tasks SET ${DONE_SET} WHERE id = @id AND change_seq = @knownSeq AND ${STARTED}`,
  // claimDue with the default agingMs: one walk of the aged index from its top, in claim order, which stops after
  // @limit due rows. It steps over the rows not due yet whose key is higher than the last row it takes: those due
  // within (priority spread × 10 s) from now. It reads the whole rows (as arrays), so that each claim writes without
  // reading its row again.
  selectDueAged: `SELECT ${ROW} FROM ${AGED_INDEX} WHERE state = 'Initialized' AND scheduled_at <= @now ${AGED_ORDER} LIMIT @limit`,
  selectDueAgedFiltered: `SELECT ${ROW} FROM ${AGED_INDEX} WHERE state = 'Initialized' AND scheduled_at <= @now ${WORK_FILTER}
    ${AGED_ORDER} LIMIT @limit`,
  // claimDue with another agingMs (or Infinity: priority alone) walks the priority levels present, highest first (one
  // O(log n) probe each), and reads each level's due rows as one range of the claim index, already in claim order
  // within the level (one priority: the earliest due first); the repository merges the levels. Tasks due later are
  // never scanned, however many.
  topPriorityBelow: `SELECT max(priority) AS priority FROM ${CLAIM_INDEX} WHERE state = 'Initialized' AND priority < @below`,
  selectDue: `SELECT ${ROW} FROM ${CLAIM_INDEX} WHERE state = 'Initialized' AND priority = @priority AND scheduled_at <= @now
    ${LEVEL_ORDER} LIMIT @limit`,
  selectDueFiltered: `SELECT ${ROW} FROM ${CLAIM_INDEX} WHERE state = 'Initialized' AND priority = @priority AND scheduled_at <= @now
    ${WORK_FILTER} ${LEVEL_ORDER} LIMIT @limit`,
  // The earliest due time of any Initialized task: no due row of a level has an aged key above priority × agingMs
  // less it, which lets the merge of levels stop before the lower levels.
  earliestDue: `SELECT min(scheduled_at) AS at FROM horae_tasks INDEXED BY horae_tasks_due WHERE state = 'Initialized'`,
  // Work limits (WorkLimiter): the Working rows of one work, counted on their own partial index.
  countWorkingOfWork: `SELECT count(*) AS n FROM horae_tasks INDEXED BY horae_tasks_working_work WHERE state = 'Working' AND work_id = @workId`,
  renewLease: `UPDATE horae_tasks SET lease_until = @until, ${STAMP} WHERE id = @id AND ${HELD} RETURNING *`,
  // A claim ahead that never started spent no attempt: there is nothing to give back.
  release: `UPDATE horae_tasks SET state = 'Initialized', scheduled_at = @runAt, ${CLEAR_LEASE}, last_error = COALESCE(@lastError, last_error),
    attempt = CASE WHEN lease_started = 1 THEN MAX(attempt - @refund, 0) ELSE attempt END, ${STAMP} WHERE id = @id AND ${HELD} RETURNING *`,
  markAsDone: `UPDATE horae_tasks SET ${DONE_SET} WHERE id = @id AND ${STARTED} RETURNING *`,
  failHeld: `UPDATE horae_tasks SET state = 'Failed', ${CLEAR_LEASE}, last_error = @lastError, ${STAMP} WHERE id = @id AND ${STARTED} RETURNING *`,
  failInitialized: `UPDATE horae_tasks SET state = 'Failed', last_error = @lastError, ${STAMP} WHERE id = @id AND state = 'Initialized' RETURNING *`,
  cancel: `UPDATE horae_tasks SET state = 'Cancelled', ${CLEAR_LEASE}, ${STAMP} WHERE id = @id AND state IN ('Initialized', 'Working') RETURNING *`,
  cancelHeld: `UPDATE horae_tasks SET state = 'Cancelled', ${CLEAR_LEASE}, ${STAMP} WHERE id = @id AND ${HELD} RETURNING *`,
  update: `UPDATE horae_tasks SET scheduled_at = COALESCE(@scheduledAt, scheduled_at), param = COALESCE(@param, param),
    priority = COALESCE(@priority, priority), ${STAMP} WHERE id = @id AND state = 'Initialized' RETURNING *`,
  setProgress: `UPDATE horae_tasks SET progress = @progress, ${STAMP} WHERE id = @id AND ${HELD} RETURNING runs`,
  selectExpired: `SELECT id, lease_started, unstarted_claims FROM horae_tasks INDEXED BY horae_tasks_lease WHERE state = 'Working' AND lease_until <= @now
    ORDER BY lease_until, id LIMIT @limit`,
  // A run that started spent its attempt: Failed when none is left, else Initialized, due now.
  reclaim: `UPDATE horae_tasks SET
      state = CASE WHEN attempt >= max_attempts THEN 'Failed' ELSE 'Initialized' END,
      scheduled_at = CASE WHEN attempt >= max_attempts THEN scheduled_at ELSE @now END,
      ${CLEAR_LEASE}, last_error = @lastError, ${STAMP}
    WHERE id = @id AND state = 'Working' AND lease_until <= @now AND lease_started = 1 RETURNING *`,
  // A claim ahead that never started spent none: one more unstarted claim, and @state (Failed as a poison task with
  // @lastError, or Initialized due now, its lastError kept) as the repository decided from the @unstartedClaims it read.
  reclaimUnstarted: `UPDATE horae_tasks SET state = @state, scheduled_at = CASE WHEN @state = 'Initialized' THEN @now ELSE scheduled_at END,
      ${CLEAR_LEASE}, unstarted_claims = unstarted_claims + 1, last_error = COALESCE(@lastError, last_error), ${STAMP}
    WHERE id = @id AND state = 'Working' AND lease_until <= @now AND lease_started = 0 AND unstarted_claims = @unstartedClaims RETURNING *`,
  changesSince: 'SELECT * FROM horae_tasks WHERE change_seq > @after ORDER BY change_seq LIMIT @limit',
  listAll: 'SELECT * FROM horae_tasks WHERE (created_at, id) > (@afterAt, @afterId) ORDER BY created_at, id LIMIT @limit',
  listByState: 'SELECT * FROM horae_tasks WHERE state = @state AND (created_at, id) > (@afterAt, @afterId) ORDER BY created_at, id LIMIT @limit',
  listByWork: 'SELECT * FROM horae_tasks WHERE work_id = @workId AND (created_at, id) > (@afterAt, @afterId) ORDER BY created_at, id LIMIT @limit',
  listByStateAndWork: `SELECT * FROM horae_tasks WHERE work_id = @workId AND state = @state AND (created_at, id) > (@afterAt, @afterId)
    ORDER BY created_at, id LIMIT @limit`,
  listDue: `SELECT * FROM horae_tasks INDEXED BY horae_tasks_due WHERE state = 'Initialized' AND scheduled_at < @before AND (scheduled_at, id) > (@afterAt, @afterId)
    ORDER BY scheduled_at, id LIMIT @limit`,
  countByState: 'SELECT state, count(*) AS n FROM horae_tasks GROUP BY state',
  // The attempts of the tasks about to go, then the tasks, in one transaction: the same range of the ended index.
  deleteAttemptsOfTerminalBefore: `DELETE FROM horae_task_attempts WHERE task_id IN
    (SELECT id FROM horae_tasks INDEXED BY horae_tasks_ended WHERE state IN ('Done', 'Cancelled', 'Failed') AND updated_at < @before)`,
  deleteTerminalBefore: `DELETE FROM horae_tasks WHERE state IN ('Done', 'Cancelled', 'Failed') AND updated_at < @before`,
  openAttempt: `INSERT INTO horae_task_attempts (task_id, run, attempt, node, started_at, ended_at, outcome, error, check_ins)
    VALUES (@id, @run, @attempt, @owner, @now, NULL, 'running', NULL, '[]')`,
  // Only the running attempt of the run that just ended (a task upgraded from a file without history has none).
  // endedAt never goes below startedAt, even when the clock stepped back during the run.
  closeAttempt: `UPDATE horae_task_attempts SET outcome = @outcome, ended_at = MAX(@now, started_at), error = @error
    WHERE task_id = @id AND run = @run AND outcome = 'running'`,
  // Appends a check-in unless it repeats the last one, dropping the oldest beyond @maxCheckIns, in one statement.
  addCheckIn: `UPDATE horae_task_attempts SET check_ins = json_insert(
      CASE WHEN json_array_length(check_ins) >= @maxCheckIns THEN json_remove(check_ins, '$[0]') ELSE check_ins END,
      '$[#]', json_object('at', @now, 'message', @message))
    WHERE task_id = @id AND run = @run AND outcome = 'running' AND json_extract(check_ins, '$[#-1].message') IS NOT @message`,
  listAttempts: 'SELECT * FROM horae_task_attempts WHERE task_id = @id ORDER BY run',
  scheduleGet: 'SELECT * FROM horae_schedules WHERE name = @name',
  scheduleListAll: 'SELECT * FROM horae_schedules ORDER BY name',
  scheduleListDue: `SELECT * FROM horae_schedules INDEXED BY horae_schedules_due
    WHERE paused = 0 AND next_run_at IS NOT NULL AND next_run_at <= @dueBy ORDER BY next_run_at, name`,
  scheduleInsert: `INSERT INTO horae_schedules (name, spec, work_id, param, priority, max_attempts, catch_up, max_catch_up, overlap, paused,
      last_occurrence_at, last_task_id, next_run_at, created_at, updated_at, version)
    VALUES (@name, @spec, @work_id, @param, @priority, @max_attempts, @catch_up, @max_catch_up, @overlap, @paused,
      @last_occurrence_at, @last_task_id, @next_run_at, @created_at, @updated_at, @version)`,
  scheduleUpdate: `UPDATE horae_schedules SET spec = @spec, work_id = @work_id, param = @param, priority = @priority, max_attempts = @max_attempts,
      catch_up = @catch_up, max_catch_up = @max_catch_up, overlap = @overlap, paused = @paused, last_occurrence_at = @last_occurrence_at,
      last_task_id = @last_task_id, next_run_at = @next_run_at, updated_at = @updated_at, version = @version
    WHERE name = @name AND version = @expectedVersion`,
  scheduleDelete: 'DELETE FROM horae_schedules WHERE name = @name',
  readChangeSeq: `SELECT value FROM horae_meta WHERE key = 'change_seq'`,
  writeChangeSeq: `UPDATE horae_meta SET value = @seq WHERE key = 'change_seq'`,
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  savepoint: 'SAVEPOINT horae_op',
  releaseSavepoint: 'RELEASE horae_op',
  rollbackToSavepoint: 'ROLLBACK TO horae_op',
} as const;

/** The name of a statement. */
export type StatementName = keyof typeof STATEMENT_SQL;

/** Every statement, prepared. */
export type Statements = Record<StatementName, SqliteStatement>;

/**
 * The statements every run goes through (its claim, its start, its Done, the open and the close of its attempt record),
 * by the names of their parameters in the order they appear in the SQL: {@link preparePositional} prepares each with
 * anonymous parameters, which the repository binds in this order.
 *
 * Why: better-sqlite3 binds values given in order faster than an object's named ones (a 6-parameter UPDATE: 1.00–1.14
 * µs against 1.40–1.46, measured), about 1.5 µs a run over these statements. The named text in {@link STATEMENT_SQL}
 * stays the one source (query-plan.test.ts explains it; only the parameters' spelling differs, not the plan).
 */
export const POSITIONAL_ORDER = {
  claimKnown: ['owner', 'until', 'newToken', 'now', 'seq', 'id', 'now', 'ifScheduledAt', 'ifScheduledAt'],
  claimAheadKnown: ['owner', 'until', 'newToken', 'now', 'seq', 'id', 'now', 'ifScheduledAt', 'ifScheduledAt'],
  startIfUnchanged: ['now', 'seq', 'id', 'knownSeq', 'token', 'now'],
  markAsDoneIfUnchanged: ['now', 'seq', 'id', 'knownSeq', 'token'],
  openAttempt: ['id', 'run', 'attempt', 'owner', 'now'],
  closeAttempt: ['outcome', 'now', 'error', 'id', 'run'],
} as const satisfies Partial<Record<StatementName, readonly string[]>>;

/** The name of a statement also prepared with anonymous parameters. */
export type PositionalName = keyof typeof POSITIONAL_ORDER;

/** The statements of {@link POSITIONAL_ORDER}, prepared with anonymous parameters. */
export type PositionalStatements = Record<PositionalName, SqliteStatement>;

/**
 * The SQL of `name` with each named parameter made anonymous (`?`).
 *
 * @param name - a statement of {@link POSITIONAL_ORDER}
 * @returns the SQL to prepare
 * @throws Error when the statement's parameters are no longer those of {@link POSITIONAL_ORDER}, in that order (the SQL
 * changed without the order its callers bind in)
 */
export function positionalSql(name: PositionalName): string {
  const sql = STATEMENT_SQL[name];
  const found = [...sql.matchAll(/@(\w+)/g)].map((match) => match[1]);
  if (found.join(',') !== POSITIONAL_ORDER[name].join(',')) {
    throw new Error(`statement ${name} binds ${found.join(', ')}, not the order its callers use (${POSITIONAL_ORDER[name].join(', ')})`);
  }
  return sql.replace(/@\w+/g, '?');
}

/**
 * Prepares the statements of {@link POSITIONAL_ORDER} on `db`, with anonymous parameters.
 *
 * @param db - a database holding the current schema
 * @returns the prepared statements
 */
export function preparePositional(db: SqliteDatabase): PositionalStatements {
  const out: Partial<PositionalStatements> = {};
  for (const name of Object.keys(POSITIONAL_ORDER) as PositionalName[]) out[name] = db.prepare(positionalSql(name));
  return out as PositionalStatements;
}

/**
 * Prepares every statement of {@link STATEMENT_SQL} on `db`.
 *
 * @param db - a database holding the current schema
 * @returns the prepared statements, to be reused for the life of the repository
 */
export function prepareStatements(db: SqliteDatabase): Statements {
  const out: Partial<Statements> = {};
  for (const name of Object.keys(STATEMENT_SQL) as StatementName[]) {
    const statement = db.prepare(STATEMENT_SQL[name]);
    out[name] = RAW_STATEMENTS.has(name) && statement.raw !== undefined ? statement.raw(true) : statement;
  }
  return out as Statements;
}
