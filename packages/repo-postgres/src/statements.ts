/**
 * The SQL of every operation, built once per schema. Times the adapter sets come from the database's clock:
 * `NOW` is the statement's start truncated to milliseconds (the precision of a JavaScript Date, so a stored
 * time reads back exactly); due and expiry checks compare with the untruncated `statement_timestamp()`, so a
 * lease of 0 ms is expired for every later statement.
 *
 * Execution history: every transition that opens or closes a run writes its `task_attempts` row in the same
 * statement (a data-modifying CTE), so the record commits or rolls back with the transition, costs no extra
 * round trip, and rides along in a grouped statement. The run a task is in is its `runs` counter, which the start
 * of a run increments (a claim by id, or markAsStarted after a claim ahead); a record is closed only while it is
 * `running`, so a transition out of Initialized, out of a claim whose run never started, or of a task migrated from
 * a schema without history, touches none.
 *
 * Claims are not attempts (DESIGN rule 11): every claim counts in `claims`; only the start of a run counts an
 * attempt, resets `unstarted_claims` and sets `lease_started`. claimDue claims ahead, unstarted.
 */
import { ATTEMPT_COLUMNS, taskColumns, taskOutput } from './row-mapping.js';

/** The statement's start on the database's clock, at millisecond precision. */
const NOW = `date_trunc('milliseconds', statement_timestamp())`;
/** Marks a row changed: the change log orders rows by the writing transaction, then a sequence. */
const CHANGED = `updated_at = ${NOW}, change_xid = DEFAULT, change_seq = DEFAULT`;
/**
 * Clears the lease. `lease_started` is left as it was: it means something only while Working, and every claim sets
 * it, so the RETURNING of a transition out of Working still says whether a run ended.
 */
const NO_LEASE = `lease_owner = NULL, lease_until = NULL, lease_token = NULL`;
/** A new claim, started or not: counted in `claims`, under a new lease. $owner and $leaseMs are placeholders. */
const newLease = (owner: string, leaseMs: string, alias = ''): string =>
  `state = 'Working', claims = ${alias}claims + 1, lease_owner = ${owner}, lease_token = gen_random_uuid()::text, ` +
  `lease_until = ${NOW} + ${leaseMs}::float8 * interval '1 millisecond'`;
/** The start of a run: its attempt counts, it gets the next run number, and the unstarted claims in a row end. */
const startRun = (alias = ''): string => `attempt = ${alias}attempt + 1, runs = ${alias}runs + 1, unstarted_claims = 0, lease_started = true`;
/** Due by the database's clock (untruncated, so that a time stored this millisecond is due). */
const DUE = `scheduled_at <= statement_timestamp()`;
/**
 * Milliseconds until a row is due by the database's clock, rounded up (> 0), or NULL when it is due: what a claim by
 * id refused as not due reports (TaskNotDueError.dueInMs).
 */
const dueInMs = (alias = ''): string =>
  `CASE WHEN ${alias}scheduled_at > statement_timestamp() THEN ceil(extract(epoch FROM ${alias}scheduled_at - statement_timestamp()) * 1000)::float8 END`;
/**
 * The aged claim key at the default agingMs (10 s): `priority × 10000 − scheduled_at` in epoch milliseconds, higher
 * first. It must be, token for token, the expression of the index tasks_aged (schema version 6), or the planner
 * cannot walk that index; see the migration for why it is written this way.
 */
const agedKey = (alias = ''): string =>
  `(least(greatest(${alias}priority, '-1e300'::float8), '1e300'::float8) * 10000 - (extract(epoch FROM ${alias}scheduled_at AT TIME ZONE 'UTC') * 1000)::float8)`;
/**
 * "Initialized" as the predicate of tasks_aged states it, for the aged claim alone: a statement that says it so implies
 * that index's predicate and no other partial index's, so the planner walks tasks_aged rather than reading the due rows
 * through tasks_due or tasks_claim and sorting them (see schema version 6).
 */
const INITIALIZED_FOR_AGED = `state >= 'Initialized' AND state <= 'Initialized'`;
/** The agingMs that the index tasks_aged serves. */
export const INDEXED_AGING_MS = 10_000;
/**
 * The aged claim key at another finite agingMs ($n): `priority × agingMs − scheduled_at` in epoch milliseconds,
 * computed in numeric, so that no agingMs overflows it and an exact tie (integer priorities and agingMs) stays exact.
 * No index holds it: the due rows are sorted (top-N by the LIMIT).
 */
const agedKeyBy = (agingMs: string, alias = ''): string =>
  `(${alias}priority::numeric * ${agingMs}::numeric - extract(epoch FROM ${alias}scheduled_at) * 1000)`;
/** How a claim of due tasks orders them. */
export type ClaimOrder = 'aged' | 'priority' | 'agedBy';
/**
 * The claim order: highest effective priority first, then earliest due, then oldest, then id. 'aged' is the default
 * agingMs (the index tasks_aged), 'priority' agingMs Infinity (the index tasks_claim), 'agedBy' another agingMs, the
 * placeholder `agingMs`.
 */
const orderBy = (order: ClaimOrder, alias = '', agingMs = ''): string => {
  const first = order === 'aged' ? `${agedKey(alias)} DESC` : order === 'priority' ? `${alias}priority DESC` : `${agedKeyBy(agingMs, alias)} DESC`;
  return `${first}, ${alias}scheduled_at, ${alias}created_at, ${alias}id`;
};
/** A new run starts with no progress: what a task reports is its current run's. */
const NEW_RUN = `progress = NULL, progress_at = NULL`;
/** The states that hold a uniqueKey; must match the predicate of the tasks_unique_key index. */
const LIVE = `state IN ('Initialized', 'Working')`;
/**
 * The compare-and-set on a row's state in a statement that reaches its rows by id: `state = '<state>'`, written so
 * that the planner cannot use it to choose an index.
 *
 * Why: a plain `state = 'Working'` also implies the predicate of every partial index on that state (tasks_lease,
 * tasks_working_work; tasks_claim and tasks_due for Initialized; tasks_unique_key for both), so the planner may read
 * the rows by walking such an index whole and filtering by id. It does when it believes the index nearly empty: a
 * partial index's row count is refreshed only by VACUUM and ANALYZE, and the ANALYZE after a bulk insert (or
 * autovacuum's) sees no Working rows, so a few thousand claims later every Done, renewal or claim by id walks all
 * Working (or Initialized) rows, in custom and generic plans alike. Compared with an uncorrelated sub-select (an
 * InitPlan, evaluated once per execution, never folded into a constant), the state proves no index predicate: the
 * only paths left are the primary key and, on a table too small to matter, a sequential scan. The row's value is
 * still checked on every row, and re-checked under its lock like any other condition.
 */
const stateIs = (state: string, alias = ''): string => `${alias}state = (SELECT '${state}'::text)`;
/**
 * {@link LIVE} as {@link stateIs} writes a state, for the same reason (tasks_unique_key holds every live row). The
 * cast makes the parenthesized sub-select one array value, not the row source of `= ANY (subquery)`.
 */
const LIVE_BY_ID = `state = ANY ((SELECT ARRAY['Initialized', 'Working'])::text[])`;
/**
 * Whether a Working row (alias t) whose lease expired goes to Failed: a started run whose attempts are spent, or a claim
 * ahead that reaches maxUnstartedClaims ($2) unstarted claims in a row.
 */
const FAILS_ON_EXPIRY = `CASE WHEN t.lease_started THEN t.attempt >= t.max_attempts ELSE t.unstarted_claims + 1 >= $2::int END`;
/** The error a run whose lease expired ends with. */
const LEASE_EXPIRED = `'{"message": "lease expired", "code": "LEASE_EXPIRED"}'::jsonb`;

/** The SQL of one schema. */
export type Statements = ReturnType<typeof buildStatements>;

/**
 * Builds the statements of a schema.
 *
 * @param s - the quoted schema name
 * @param channel - the NOTIFY channel (a plain identifier, validated by the caller)
 */
export function buildStatements(s: string, channel: string) {
  const t = `${s}.tasks`;
  /** A task's columns as a CTE returns them, for the rest of its statement. */
  const cols = taskColumns();
  const tcols = taskColumns('t');
  /** A task's columns as a statement returns them to the adapter (times as epoch milliseconds). */
  const out = taskOutput();
  const a = `${s}.task_attempts`;
  const notify = (reason: string, alias = ''): string =>
    `pg_notify('${channel}', json_build_object('taskId', ${alias}id, 'reason', '${reason}')::text) AS notified`;
  /** A CTE that opens the `running` record of each task whose run the CTE `from` started (it returns `runs`). */
  const openRun = (from: string): string => `
      opened AS (
        INSERT INTO ${a} (task_id, run, attempt, node, started_at, outcome)
        SELECT id, runs, attempt, lease_owner, updated_at, 'running' FROM ${from}
      )`;
  /** A CTE that closes the running record of each task the CTE `from` moved out of Working (it returns `runs`). */
  const closeRun = (from: string, outcome: string, error: string): string => `
      closed AS (
        -- An INSERT … ON CONFLICT DO UPDATE, not an UPDATE: under READ COMMITTED a statement reads task_attempts as of
        -- its start, so one that waited on the task's row for a concurrent start to commit would not see the record
        -- that start opened, and would leave it running (found by the model-based tests). ON CONFLICT finds the
        -- committed record and updates it. A task with runs > 0 always has the record of that run (opened in the
        -- statement that counted it), so the INSERT never adds a row; an unstarted claim's last record is closed already.
        INSERT INTO ${a} AS a (task_id, run, attempt, node, started_at, outcome, ended_at, error)
        SELECT f.id, f.runs, 0, '', ${NOW}, ${outcome}, ${NOW}, ${error} FROM ${from} f WHERE f.runs > 0
        -- greatest(): an end never precedes its start, even if the server's clock was set back in between.
        ON CONFLICT (task_id, run) DO UPDATE SET outcome = EXCLUDED.outcome, ended_at = greatest(EXCLUDED.ended_at, a.started_at), error = EXCLUDED.error
        WHERE a.outcome = 'running'
      )`;
  /**
   * A claim ahead of due tasks in `order`. $1: owner, $2: leaseMs, $3: limit, $4: workIds or null (and $5: agingMs
   * for 'agedBy'). The due rows are picked with `FOR UPDATE SKIP LOCKED`, so two claimers never receive one task and
   * neither waits for the other; each goes to Working under a new lease, unstarted, with no record.
   */
  const claimAhead = (order: ClaimOrder): string => `
      WITH due AS (
        SELECT id FROM ${t}
        WHERE ${order === 'aged' ? INITIALIZED_FOR_AGED : `state = 'Initialized'`} AND ${DUE} AND ($4::text[] IS NULL OR work_id = ANY($4::text[]))
        ORDER BY ${orderBy(order, '', '$5')}
        LIMIT $3
        FOR UPDATE SKIP LOCKED
      ), claimed AS (
        UPDATE ${t} t SET ${newLease('$1', '$2', 't.')}, lease_started = false, ${NEW_RUN}, ${CHANGED}
        -- Not a join with due: planned without knowing $3, due looks big enough to hash-join with the whole table.
        WHERE t.id = ANY (ARRAY(SELECT id FROM due)) AND ${stateIs('Initialized', 't.')}
        RETURNING ${tcols}
      )
      SELECT ${out} FROM claimed ORDER BY ${orderBy(order, 'claimed.', '$5')}`;
  /**
   * The due rows of claimDueWithinLimits in `order`, locked. $1: workIds or null, $2: works to leave out (full), $3:
   * limit (and $4: agingMs for 'agedBy').
   */
  const selectDueLimited = (order: ClaimOrder): string => `
      SELECT id, work_id FROM ${t}
      WHERE ${order === 'aged' ? INITIALIZED_FOR_AGED : `state = 'Initialized'`} AND ${DUE}
        AND ($1::text[] IS NULL OR work_id = ANY($1::text[])) AND NOT (work_id = ANY($2::text[]))
      ORDER BY ${orderBy(order, '', '$4')}
      LIMIT $3
      FOR UPDATE SKIP LOCKED`;
  /** A run ends only if it started: a claim ahead is started (markAsStarted) before its Done or Failed. */
  const held = (alias = '', token = '$2'): string => `${stateIs('Working', alias)} AND ${alias}lease_token = ${token} AND ${alias}lease_started`;
  return {
    /** $1..$9: parallel arrays of id, work_id, param (json text), scheduled_at, priority, max_attempts, unique_key, kind, schedule_name. */
    insertMany: `
      INSERT INTO ${t} (id, work_id, param, scheduled_at, state, priority, max_attempts, unique_key, kind, schedule_name, created_at, updated_at)
      SELECT u.id, u.work_id, u.param::json, u.scheduled_at, 'Initialized', u.priority, u.max_attempts, u.unique_key, u.kind, u.schedule_name, ${NOW}, ${NOW}
      FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[], $6::int4[], $7::text[], $8::text[], $9::text[])
        WITH ORDINALITY AS u(id, work_id, param, scheduled_at, priority, max_attempts, unique_key, kind, schedule_name, ord)
      ORDER BY u.ord
      ON CONFLICT (unique_key) WHERE ${LIVE} DO NOTHING
      RETURNING ${out}, ${notify('inserted')}`,
    /** $1: unique keys. */
    liveByKeys: `SELECT ${out} FROM ${t} WHERE unique_key = ANY($1::text[]) AND ${LIVE}`,
    /** $1: id. */
    getById: `SELECT ${out} FROM ${t} WHERE id = $1`,
    /** $1: ids. */
    existing: `SELECT id, state FROM ${t} WHERE id = ANY($1::text[])`,
    /** $1: xid, $2: seq, $3: limit. `settled`: every transaction below the row's has ended. */
    changes: `
      SELECT ${out}, change_xid::text AS cursor_xid, change_seq::text AS cursor_seq, change_xid < h.horizon AS settled
      FROM ${t}, (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) AS h
      WHERE (change_xid, change_seq) > ($1::xid8, $2::int8)
      ORDER BY change_xid, change_seq
      LIMIT $3`,
    /** $1: an xid; true once no transaction at or below it is running. */
    horizonPassed: `SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AS passed`,
    /** The oldest running transaction (or the next to start): the start of everything not yet committed. */
    horizon: `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`,
    /** $1: before, $2: after time (null: first page), $3: after id, $4: limit. */
    listDue: `
      SELECT ${out} FROM ${t} t
      WHERE state = 'Initialized' AND scheduled_at < $1::timestamptz
        AND ($2::timestamptz IS NULL OR (scheduled_at, id) > ($2::timestamptz, $3::text))
      -- Qualified: a bare name would mean the output column (the time in milliseconds), which no index orders.
      ORDER BY t.scheduled_at, t.id
      LIMIT $4`,
    /**
     * $1: id, $2: owner, $3: leaseMs, $4: ifScheduledAt or null. A claim by id: claims and starts the run in one
     * write, opening its record, when the task is Initialized, due by the database's clock and (with $4) due at $4.
     * No row back: see claimRefusal.
     */
    claim: `
      WITH claimed AS (
        UPDATE ${t} SET ${newLease('$2', '$3')}, ${startRun()}, ${NEW_RUN}, ${CHANGED}
        WHERE id = $1 AND ${stateIs('Initialized')} AND ${DUE} AND ($4::timestamptz IS NULL OR scheduled_at = $4::timestamptz)
        RETURNING ${cols}, runs
      ),${openRun('claimed')}
      SELECT ${out} FROM claimed`,
    /**
     * $1: id, $2: ifScheduledAt or null. Why a claim by id wrote nothing, read after it: no row, no such task;
     * `claimable` false, not Initialized or due at another time (the claim returns null); else `due_in_ms`, the
     * milliseconds until it is due by the database's clock (TaskNotDueError), or NULL when it is due now (it changed
     * between the two statements: the claim is tried again).
     */
    claimRefusal: `
      SELECT state = 'Initialized' AND ($2::timestamptz IS NULL OR scheduled_at = $2::timestamptz) AS claimable, ${dueInMs()} AS due_in_ms
      FROM ${t} WHERE id = $1`,
    /**
     * $1: ids (unique, sorted), $2: owner, $3: leaseMs, $4: ifScheduledAt per id (parallel to $1, null for none).
     * The claims by id of one tick as one statement: each row keeps its own compare-and-set (Initialized, due by the
     * database's clock, and at its due time when given), and each winner's run starts and opens its record. `picked`
     * locks the rows in id order (LockRows sits above the Sort), so two grouped claims of overlapping ids, from any
     * nodes, never wait on each other in a cycle; a row changed meanwhile is re-checked under the lock (READ
     * COMMITTED) and left out when it no longer matches. One row back per id that exists, `found` set: with the
     * task's columns when this statement claimed it, NULL columns when not, and then `due_in_ms` set when the row
     * (as the statement's snapshot saw it) is claimable but not due yet; an id with no row names no task (no second
     * round trip to tell lost, not due and missing apart). Only the ids left unclaimed are looked up again (the second
     * half): when every id won, the common case, it reads nothing.
     */
    claimMany: `
      WITH picked AS (
        SELECT t.id FROM ${t} t
        JOIN unnest($1::text[], $4::timestamptz[]) AS u(id, if_scheduled_at) ON t.id = u.id
        -- "id = ANY" steers the planner to primary-key look-ups whatever its statistics say.
        WHERE t.id = ANY($1::text[]) AND ${stateIs('Initialized', 't.')} AND t.${DUE}
          AND (u.if_scheduled_at IS NULL OR t.scheduled_at = u.if_scheduled_at)
        ORDER BY t.id
        FOR UPDATE OF t
      ), claimed AS (
        UPDATE ${t} t SET ${newLease('$2', '$3', 't.')}, ${startRun('t.')}, ${NEW_RUN}, ${CHANGED}
        FROM picked WHERE t.id = picked.id AND ${stateIs('Initialized', 't.')}
        RETURNING ${tcols}, t.runs
      ),${openRun('claimed')}
      SELECT c.id AS found, ${taskOutput('c')}, NULL::float8 AS due_in_ms FROM claimed c
      UNION ALL
      -- "ON false": the columns of claimed, all NULL, so both halves have the same shape.
      SELECT e.id, ${taskOutput('n')},
        CASE WHEN e.state = 'Initialized' AND (u.if_scheduled_at IS NULL OR e.scheduled_at = u.if_scheduled_at) THEN ${dueInMs('e.')} END
      FROM ${t} e JOIN unnest($1::text[], $4::timestamptz[]) AS u(id, if_scheduled_at) ON e.id = u.id LEFT JOIN claimed n ON false
      WHERE e.id = ANY(ARRAY(SELECT unnest($1::text[]) EXCEPT SELECT id FROM claimed))`,
    /**
     * $1: owner, $2: leaseMs, $3: limit, $4: workIds or null. Claims ahead (unstarted: no attempt, no record) up to
     * $3 tasks due by the database's clock, in the aged order at the default agingMs: one walk of the index tasks_aged
     * from its top, which stops after $3 due rows (it steps over the rows not due yet whose key is higher: those due
     * within the priority spread × 10 s from now).
     */
    claimDueAged: claimAhead('aged'),
    /** As claimDueAged, in the order of priority alone (agingMs Infinity): a walk of the index tasks_claim. */
    claimDueByPriority: claimAhead('priority'),
    /**
     * As claimDueAged, $5: another finite agingMs. No index holds this order: every due row (of the works of $4) is
     * read through tasks_due and the first $3 kept by a top-N sort, O(due rows) per call.
     */
    claimDueAgedBy: claimAhead('agedBy'),
    /**
     * $1: id. The work and claimability of a task, read under its work's lock by claimWithinLimit: `due_in_ms` as in
     * claimRefusal (NULL when due by the database's clock).
     */
    claimable: `SELECT work_id, state, scheduled_at, ${dueInMs()} AS due_in_ms FROM ${t} WHERE id = $1`,
    /**
     * $1: the schema name, $2: workIds, sorted by the caller. Takes the transaction-scoped advisory lock of each
     * work, in the array's order (unnest yields it in order), so that two claimers never wait on each other in a
     * cycle. Every limited claim of a work holds its lock from before its count to its commit.
     */
    lockWorks: `SELECT count(pg_advisory_xact_lock(hashtext($1::text), hashtext(w))) AS locked FROM unnest($2::text[]) WITH ORDINALITY AS u(w, ord)`,
    /** $1: workIds. Working tasks per work (expired leases count until reclaimed), on the tasks_working_work index. */
    countWorking: `SELECT work_id, count(*)::int AS n FROM ${t} WHERE state = 'Working' AND work_id = ANY($1::text[]) GROUP BY work_id`,
    /** $1: workIds or null, $2: works to leave out (full), $3: limit. Due rows in the aged order, locked. */
    selectDueLimitedAged: selectDueLimited('aged'),
    /** As selectDueLimitedAged, by priority alone. */
    selectDueLimitedByPriority: selectDueLimited('priority'),
    /** As selectDueLimitedAged, $4: another finite agingMs. */
    selectDueLimitedAgedBy: selectDueLimited('agedBy'),
    /** $1: owner, $2: leaseMs, $3: ids (locked by selectDueLimited…). Claims them ahead, unstarted; no record. */
    claimIds: `
      UPDATE ${t} t SET ${newLease('$1', '$2', 't.')}, lease_started = false, ${NEW_RUN}, ${CHANGED}
      FROM unnest($3::text[]) AS picked(id) WHERE t.id = picked.id AND ${stateIs('Initialized', 't.')}
      RETURNING ${taskOutput('t')}`,
    /**
     * $1: ids, $2: tokens (parallel arrays, ids unique). Starts the run of each claim ahead held under its token:
     * attempt + 1, the next run number, unstarted_claims 0, lease_started, and its `running` record (node = the lease
     * owner, started at the statement's time), each row fenced on its own; a lease that has expired starts nothing. A
     * row that does not come back was not started by this statement (missing, lost, expired, or started already): the
     * caller reads it to tell which.
     */
    startMany: `
      WITH started AS (
        UPDATE ${t} t SET ${startRun('t.')}, ${CHANGED}
        FROM unnest($1::text[], $2::text[]) AS u(id, token)
        -- "id = ANY" steers the planner to primary-key look-ups whatever its statistics say.
        WHERE t.id = ANY($1::text[]) AND t.id = u.id AND ${stateIs('Working', 't.')} AND t.lease_token = u.token AND NOT t.lease_started
          AND t.lease_until > ${NOW}
        RETURNING ${tcols}, t.runs
      ),${openRun('started')}
      SELECT ${out} FROM started`,
    /** $1: id, $2: token. startMany for one task. */
    start: `
      WITH started AS (
        UPDATE ${t} SET ${startRun()}, ${CHANGED}
        WHERE id = $1 AND ${stateIs('Working')} AND lease_token = $2 AND NOT lease_started AND lease_until > ${NOW}
        RETURNING ${cols}, runs
      ),${openRun('started')}
      SELECT ${out} FROM started`,
    /** $1: ids. Whole tasks, to tell apart the rows a grouped write did not change (missing, lost, unstarted, started). */
    getMany: `SELECT ${out} FROM ${t} WHERE id = ANY($1::text[])`,
    /** $1: id, $2: token, $3: leaseMs. */
    renew: `
      UPDATE ${t} SET lease_until = ${NOW} + $3::float8 * interval '1 millisecond', ${CHANGED}
      WHERE id = $1 AND ${stateIs('Working')} AND lease_token = $2
      RETURNING ${out}`,
    /**
     * $1: id, $2: token, $3: runAt, $4: error (jsonb) or null to keep the last, $5: refund the attempt. Closes the
     * run `retried` with the error, or `released` without one. A claim ahead whose run never started spent no attempt
     * (nothing to refund) and has no record (none to close).
     */
    release: `
      WITH released AS (
        UPDATE ${t} SET state = 'Initialized', scheduled_at = $3::timestamptz, ${NO_LEASE},
          last_error = coalesce($4::jsonb, last_error),
          attempt = CASE WHEN $5::boolean AND lease_started THEN greatest(attempt - 1, 0) ELSE attempt END, ${CHANGED}
        WHERE id = $1 AND ${stateIs('Working')} AND lease_token = $2
        RETURNING ${cols}, runs, ${notify('released')}
      ),${closeRun('released', `CASE WHEN $4::jsonb IS NULL THEN 'released' ELSE 'retried' END`, '$4::jsonb')}
      SELECT ${out}, notified FROM released`,
    /**
     * $1: ids, $2: tokens (parallel arrays, ids unique). Each started run held under its token goes to Done, its record
     * closed `succeeded`; each row fenced on its own. A row that does not come back was refused (missing, lost, or
     * unstarted): the caller reads it to tell which.
     */
    doneMany: `
      WITH done AS (
        UPDATE ${t} t SET state = 'Done', ${NO_LEASE}, ${CHANGED}
        FROM unnest($1::text[], $2::text[]) AS u(id, token)
        -- "id = ANY" steers the planner to primary-key look-ups whatever its statistics say.
        WHERE t.id = ANY($1::text[]) AND t.id = u.id AND ${held('t.', 'u.token')}
        RETURNING ${tcols}, t.runs
      ),${closeRun('done', `'succeeded'`, 'NULL')}
      SELECT ${out} FROM done`,
    /** $1: id, $2: token. doneMany for one task. */
    done: `
      WITH done AS (
        UPDATE ${t} SET state = 'Done', ${NO_LEASE}, ${CHANGED}
        WHERE id = $1 AND ${held()}
        RETURNING ${cols}, runs
      ),${closeRun('done', `'succeeded'`, 'NULL')}
      SELECT ${out} FROM done`,
    /**
     * $1: ids, $2: tokens, $3: errors (jsonb text; parallel arrays, ids unique). As doneMany, to Failed with each
     * row's error, its record closed `failed` with it.
     */
    failMany: `
      WITH failed AS (
        UPDATE ${t} t SET state = 'Failed', ${NO_LEASE}, last_error = u.error::jsonb, ${CHANGED}
        FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, token, error)
        -- "id = ANY" steers the planner to primary-key look-ups whatever its statistics say.
        WHERE t.id = ANY($1::text[]) AND t.id = u.id AND ${held('t.', 'u.token')}
        RETURNING ${tcols}, t.runs
      ),${closeRun('failed', `'failed'`, 'f.last_error')}
      SELECT ${out} FROM failed`,
    /** $1: id, $2: error (jsonb), $3: token. failMany for one task. */
    failWorking: `
      WITH failed AS (
        UPDATE ${t} SET state = 'Failed', ${NO_LEASE}, last_error = $2::jsonb, ${CHANGED}
        WHERE id = $1 AND ${held('', '$3')}
        RETURNING ${cols}, runs
      ),${closeRun('failed', `'failed'`, '$2::jsonb')}
      SELECT ${out} FROM failed`,
    /** $1: id, $2: error (jsonb). */
    failInitialized: `
      UPDATE ${t} SET state = 'Failed', last_error = $2::jsonb, ${CHANGED}
      WHERE id = $1 AND ${stateIs('Initialized')}
      RETURNING ${out}`,
    /**
     * $1: id. Out of Working, closes the run `cancelled`; out of Initialized there is none running (every
     * transition out of Working closed it), so nothing is written.
     */
    cancel: `
      WITH cancelled AS (
        UPDATE ${t} SET state = 'Cancelled', ${NO_LEASE}, ${CHANGED}
        WHERE id = $1 AND ${LIVE_BY_ID}
        RETURNING ${cols}, runs, ${notify('cancelled')}
      ),${closeRun('cancelled', `'cancelled'`, 'NULL')}
      SELECT ${out}, notified FROM cancelled`,
    /** $1: id, $2: token. Closes the run `cancelled`. */
    cancelWorking: `
      WITH cancelled AS (
        UPDATE ${t} SET state = 'Cancelled', ${NO_LEASE}, ${CHANGED}
        WHERE id = $1 AND ${stateIs('Working')} AND lease_token = $2
        RETURNING ${cols}, runs, ${notify('cancelled')}
      ),${closeRun('cancelled', `'cancelled'`, 'NULL')}
      SELECT ${out}, notified FROM cancelled`,
    /** $1: id, $2: scheduledAt or null, $3: set param?, $4: param (json text), $5: priority or null. */
    update: `
      UPDATE ${t} SET scheduled_at = coalesce($2::timestamptz, scheduled_at),
        param = CASE WHEN $3::boolean THEN $4::json ELSE param END,
        priority = coalesce($5::float8, priority), ${CHANGED}
      WHERE id = $1 AND ${stateIs('Initialized')}
      RETURNING ${out}, ${notify('updated')}`,
    /**
     * $1: id, $2: token, $3: progress (jsonb), $4: message or null, $5: the most check-ins an attempt keeps.
     * A message that differs from the running record's last check-in is appended to it (the oldest dropped
     * beyond $5), at the same time as `progress_at`. One row back when the progress was recorded.
     */
    progress: `
      WITH progressed AS (
        UPDATE ${t} SET progress = $3::jsonb, progress_at = ${NOW}, ${CHANGED}
        WHERE id = $1 AND ${stateIs('Working')} AND lease_token = $2
        RETURNING id, runs
      ), checked_in AS (
        UPDATE ${a} a SET check_ins =
          CASE WHEN jsonb_array_length(a.check_ins) < $5::int THEN a.check_ins
            ELSE (SELECT coalesce(jsonb_agg(e.value ORDER BY e.ord), '[]'::jsonb)
                  FROM jsonb_array_elements(a.check_ins) WITH ORDINALITY AS e(value, ord)
                  WHERE e.ord > jsonb_array_length(a.check_ins) - $5::int + 1)
          END || jsonb_build_array(jsonb_build_object('at', (extract(epoch FROM ${NOW}) * 1000)::int8, 'message', $4::text))
        FROM progressed p
        WHERE $4::text IS NOT NULL AND a.task_id = p.id AND a.run = p.runs AND a.outcome = 'running'
          AND (a.check_ins -> -1 ->> 'message') IS DISTINCT FROM $4::text
      )
      SELECT id FROM progressed`,
    /**
     * $1: limit, $2: maxUnstartedClaims, $3–$6: the poison error's name, code, and its message before and after the
     * count (from poisonTaskError, so the text is the contract's). A run that started spent its attempt: back to
     * Initialized (due now), or Failed when the attempts are spent, its record closed `lease-expired`. A claim ahead
     * that never started spent none and has no record: unstarted_claims + 1, and Failed as a poison task when that
     * reaches $2, else Initialized (due now) with its lastError kept (no run failed).
     */
    reclaim: `
      WITH expired AS (
        SELECT id FROM ${t}
        WHERE state = 'Working' AND lease_until <= statement_timestamp()
        ORDER BY lease_until
        LIMIT $1
        FOR UPDATE SKIP LOCKED
      ), reclaimed AS (
        UPDATE ${t} t SET
          state = CASE WHEN ${FAILS_ON_EXPIRY} THEN 'Failed' ELSE 'Initialized' END,
          scheduled_at = CASE WHEN ${FAILS_ON_EXPIRY} THEN t.scheduled_at ELSE ${NOW} END,
          unstarted_claims = CASE WHEN t.lease_started THEN t.unstarted_claims ELSE t.unstarted_claims + 1 END,
          last_error = CASE WHEN t.lease_started THEN ${LEASE_EXPIRED}
            WHEN t.unstarted_claims + 1 >= $2::int
              THEN jsonb_build_object('name', $3::text, 'code', $4::text, 'message', $5::text || (t.unstarted_claims + 1) || $6::text)
            ELSE t.last_error END,
          ${NO_LEASE}, ${CHANGED}
        -- Not a join with expired: see claimAhead.
        WHERE t.id = ANY (ARRAY(SELECT id FROM expired)) AND ${stateIs('Working', 't.')}
        RETURNING ${tcols}, t.runs,
          CASE WHEN t.state = 'Initialized' THEN pg_notify('${channel}', json_build_object('taskId', t.id, 'reason', 'released')::text) END AS notified
      ),${closeRun('reclaimed', `'lease-expired'`, LEASE_EXPIRED)}
      SELECT ${out}, notified FROM reclaimed`,
    /** $1: state or null, $2: workId or null, $3: after time or null, $4: after id, $5: limit. */
    list: `
      SELECT ${out} FROM ${t} t
      WHERE ($1::text IS NULL OR state = $1::text) AND ($2::text IS NULL OR work_id = $2::text)
        AND ($3::timestamptz IS NULL OR (created_at, id) > ($3::timestamptz, $4::text))
      -- Qualified: a bare name would mean the output column (the time in milliseconds), which no index orders.
      ORDER BY t.created_at, t.id
      LIMIT $5`,
    /** Refreshes the planner's statistics after a bulk insert (autovacuum may take a minute to notice). */
    analyze: `ANALYZE ${t}`,
    countByState: `SELECT state, count(*)::int AS n FROM ${t} GROUP BY state`,
    /** $1: before. Their attempt records go with them (the tasks_delete_attempts trigger, in the same statement). */
    deleteTerminal: `DELETE FROM ${t} WHERE state IN ('Done', 'Cancelled', 'Failed') AND updated_at < $1::timestamptz`,
    /** $1: id. No row: no such task; one row with a null `task_id`: a task that never ran; else its runs, oldest first. */
    listAttempts: `
      SELECT ${ATTEMPT_COLUMNS.split(', ').map((c) => `a.${c}`).join(', ')}
      FROM ${t} t LEFT JOIN ${a} a ON a.task_id = t.id
      WHERE t.id = $1
      ORDER BY a.run`,
  };
}
