/**
 * The SQL of every operation, built once per schema. Times the adapter sets come from the database's clock:
 * `NOW` is the statement's start truncated to milliseconds (the precision of a JavaScript Date, so a stored
 * time reads back exactly); due and expiry checks compare with the untruncated `statement_timestamp()`, so a
 * lease of 0 ms is expired for every later statement.
 */
import { taskColumns } from './row-mapping.js';

/** The statement's start on the database's clock, at millisecond precision. */
const NOW = `date_trunc('milliseconds', statement_timestamp())`;
/** Marks a row changed: the change log orders rows by the writing transaction, then a sequence. */
const CHANGED = `updated_at = ${NOW}, change_xid = DEFAULT, change_seq = DEFAULT`;
/** Clears the lease. */
const NO_LEASE = `lease_owner = NULL, lease_until = NULL, lease_token = NULL`;
/** A new run starts with no progress: what a task reports is its current run's. */
const NEW_RUN = `progress = NULL, progress_at = NULL`;
/** The states that hold a uniqueKey; must match the predicate of the tasks_unique_key index. */
const LIVE = `state IN ('Initialized', 'Working')`;

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
  const cols = taskColumns();
  const tcols = taskColumns('t');
  const notify = (reason: string, alias = ''): string =>
    `pg_notify('${channel}', json_build_object('taskId', ${alias}id, 'reason', '${reason}')::text) AS notified`;
  return {
    /** $1..$7: parallel arrays of id, work_id, param (json text), scheduled_at, priority, max_attempts, unique_key. */
    insertMany: `
      INSERT INTO ${t} (id, work_id, param, scheduled_at, state, priority, max_attempts, unique_key, created_at, updated_at)
      SELECT u.id, u.work_id, u.param::json, u.scheduled_at, 'Initialized', u.priority, u.max_attempts, u.unique_key, ${NOW}, ${NOW}
      FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[], $6::int4[], $7::text[])
        WITH ORDINALITY AS u(id, work_id, param, scheduled_at, priority, max_attempts, unique_key, ord)
      ORDER BY u.ord
      ON CONFLICT (unique_key) WHERE ${LIVE} DO NOTHING
      RETURNING ${cols}, ${notify('inserted')}`,
    /** $1: unique keys. */
    liveByKeys: `SELECT ${cols} FROM ${t} WHERE unique_key = ANY($1::text[]) AND ${LIVE}`,
    /** $1: id. */
    getById: `SELECT ${cols} FROM ${t} WHERE id = $1`,
    /** $1: ids. */
    existing: `SELECT id, state FROM ${t} WHERE id = ANY($1::text[])`,
    /** $1: xid, $2: seq, $3: limit. `settled`: every transaction below the row's has ended. */
    changes: `
      SELECT ${cols}, change_xid::text AS cursor_xid, change_seq::text AS cursor_seq, change_xid < h.horizon AS settled
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
      SELECT ${cols} FROM ${t}
      WHERE state = 'Initialized' AND scheduled_at < $1::timestamptz
        AND ($2::timestamptz IS NULL OR (scheduled_at, id) > ($2::timestamptz, $3::text))
      ORDER BY scheduled_at, id
      LIMIT $4`,
    /** $1: id, $2: owner, $3: leaseMs, $4: ifScheduledAt or null. */
    claim: `
      UPDATE ${t} SET state = 'Working', attempt = attempt + 1, lease_owner = $2, lease_token = gen_random_uuid()::text,
        lease_until = ${NOW} + $3::float8 * interval '1 millisecond', ${NEW_RUN}, ${CHANGED}
      WHERE id = $1 AND state = 'Initialized' AND ($4::timestamptz IS NULL OR scheduled_at = $4::timestamptz)
      RETURNING ${cols}`,
    /** $1: owner, $2: leaseMs, $3: limit, $4: workIds or null. Highest priority first, then earliest due, then oldest. */
    claimDue: `
      WITH due AS (
        SELECT id FROM ${t}
        WHERE state = 'Initialized' AND scheduled_at <= statement_timestamp()
          AND ($4::text[] IS NULL OR work_id = ANY($4::text[]))
        ORDER BY priority DESC, scheduled_at, created_at, insert_seq
        LIMIT $3
        FOR UPDATE SKIP LOCKED
      ), claimed AS (
        UPDATE ${t} t SET state = 'Working', attempt = t.attempt + 1, lease_owner = $1, lease_token = gen_random_uuid()::text,
          lease_until = ${NOW} + $2::float8 * interval '1 millisecond', ${NEW_RUN}, ${CHANGED}
        FROM due WHERE t.id = due.id AND t.state = 'Initialized'
        RETURNING ${tcols}, t.insert_seq
      )
      SELECT ${cols} FROM claimed ORDER BY priority DESC, scheduled_at, created_at, insert_seq`,
    /** $1: id, $2: token, $3: leaseMs. */
    renew: `
      UPDATE ${t} SET lease_until = ${NOW} + $3::float8 * interval '1 millisecond', ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $2
      RETURNING ${cols}`,
    /** $1: id, $2: token, $3: runAt, $4: error (jsonb) or null to keep the last, $5: refund the attempt. */
    release: `
      UPDATE ${t} SET state = 'Initialized', scheduled_at = $3::timestamptz, ${NO_LEASE},
        last_error = coalesce($4::jsonb, last_error),
        attempt = CASE WHEN $5::boolean THEN greatest(attempt - 1, 0) ELSE attempt END, ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $2
      RETURNING ${cols}, ${notify('released')}`,
    /** $1: ids, $2: tokens (parallel arrays, ids unique). */
    doneMany: `
      UPDATE ${t} t SET state = 'Done', ${NO_LEASE}, ${CHANGED}
      FROM unnest($1::text[], $2::text[]) AS u(id, token)
      -- "id = ANY" steers the planner to primary-key look-ups whatever its statistics say.
      WHERE t.id = ANY($1::text[]) AND t.id = u.id AND t.state = 'Working' AND t.lease_token = u.token
      RETURNING ${tcols}`,
    /** $1: id, $2: token. */
    done: `
      UPDATE ${t} SET state = 'Done', ${NO_LEASE}, ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $2
      RETURNING ${cols}`,
    /** $1: id, $2: error (jsonb), $3: token. */
    failWorking: `
      UPDATE ${t} SET state = 'Failed', ${NO_LEASE}, last_error = $2::jsonb, ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $3
      RETURNING ${cols}`,
    /** $1: id, $2: error (jsonb). */
    failInitialized: `
      UPDATE ${t} SET state = 'Failed', last_error = $2::jsonb, ${CHANGED}
      WHERE id = $1 AND state = 'Initialized'
      RETURNING ${cols}`,
    /** $1: id. */
    cancel: `
      UPDATE ${t} SET state = 'Cancelled', ${NO_LEASE}, ${CHANGED}
      WHERE id = $1 AND ${LIVE}
      RETURNING ${cols}, ${notify('cancelled')}`,
    /** $1: id, $2: token. */
    cancelWorking: `
      UPDATE ${t} SET state = 'Cancelled', ${NO_LEASE}, ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $2
      RETURNING ${cols}, ${notify('cancelled')}`,
    /** $1: id, $2: scheduledAt or null, $3: set param?, $4: param (json text), $5: priority or null. */
    update: `
      UPDATE ${t} SET scheduled_at = coalesce($2::timestamptz, scheduled_at),
        param = CASE WHEN $3::boolean THEN $4::json ELSE param END,
        priority = coalesce($5::float8, priority), ${CHANGED}
      WHERE id = $1 AND state = 'Initialized'
      RETURNING ${cols}, ${notify('updated')}`,
    /** $1: id, $2: token, $3: progress (jsonb). */
    progress: `
      UPDATE ${t} SET progress = $3::jsonb, progress_at = ${NOW}, ${CHANGED}
      WHERE id = $1 AND state = 'Working' AND lease_token = $2`,
    /** $1: limit. Back to Initialized (due now), or Failed when the attempts are spent. */
    reclaim: `
      WITH expired AS (
        SELECT id FROM ${t}
        WHERE state = 'Working' AND lease_until <= statement_timestamp()
        ORDER BY lease_until
        LIMIT $1
        FOR UPDATE SKIP LOCKED
      )
      UPDATE ${t} t SET
        state = CASE WHEN t.attempt >= t.max_attempts THEN 'Failed' ELSE 'Initialized' END,
        scheduled_at = CASE WHEN t.attempt >= t.max_attempts THEN t.scheduled_at ELSE ${NOW} END,
        ${NO_LEASE}, last_error = '{"message": "lease expired", "code": "LEASE_EXPIRED"}'::jsonb, ${CHANGED}
      FROM expired WHERE t.id = expired.id AND t.state = 'Working'
      RETURNING ${tcols},
        CASE WHEN t.state = 'Initialized' THEN pg_notify('${channel}', json_build_object('taskId', t.id, 'reason', 'released')::text) END AS notified`,
    /** $1: state or null, $2: workId or null, $3: after time or null, $4: after id, $5: limit. */
    list: `
      SELECT ${cols} FROM ${t}
      WHERE ($1::text IS NULL OR state = $1::text) AND ($2::text IS NULL OR work_id = $2::text)
        AND ($3::timestamptz IS NULL OR (created_at, id) > ($3::timestamptz, $4::text))
      ORDER BY created_at, id
      LIMIT $5`,
    /** Refreshes the planner's statistics after a bulk insert (autovacuum may take a minute to notice). */
    analyze: `ANALYZE ${t}`,
    countByState: `SELECT state, count(*)::int AS n FROM ${t} GROUP BY state`,
    /** $1: before. */
    deleteTerminal: `DELETE FROM ${t} WHERE state IN ('Done', 'Cancelled', 'Failed') AND updated_at < $1::timestamptz`,
  };
}
