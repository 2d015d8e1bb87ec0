/**
 * The slice of the `pg` driver's API that the adapter uses, typed structurally (Kysely style), so that a
 * caller's `pg.Pool` (or any compatible pool) is accepted without this package pinning the driver's types.
 */

/** A query the adapter sends: text, positional values and, for hot paths, a prepared-statement name. */
export interface PgQueryConfig {
  /** The SQL text with `$1`-style placeholders. */
  text: string;
  /** The values of the placeholders. */
  values?: unknown[];
  /** A name under which the driver prepares the statement once per connection. */
  name?: string;
}

/** What a query resolves to. */
export interface PgQueryResult {
  /** The returned rows, keyed by column name. */
  rows: Record<string, unknown>[];
  /** Rows affected (null for statements that affect none). */
  rowCount: number | null;
}

/** Anything that runs a query: a pool, a client. */
export interface PgQueryable {
  /** Runs one query. */
  query(config: PgQueryConfig): Promise<PgQueryResult>;
}

/** A notification delivered to a LISTENing client. */
export interface PgNotification {
  /** The channel it was sent on. */
  channel: string;
  /** Its payload. */
  payload?: string | undefined;
}

/** A client checked out of a pool: used for transactions and, with a caller's pool, for LISTEN. */
export interface PgPoolClient extends PgQueryable {
  /** Gives the client back; `true` or an error destroys it instead of returning it to the pool. */
  release(destroy?: boolean | Error): void;
  /** Subscribes to driver events ('notification', 'error', 'end'). */
  on(event: 'notification', listener: (message: PgNotification) => void): unknown;
  /** Subscribes to driver events ('notification', 'error', 'end'). */
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** Subscribes to driver events ('notification', 'error', 'end'). */
  on(event: 'end', listener: () => void): unknown;
  /** Removes every listener of an event. */
  removeAllListeners(event?: string): unknown;
}

/** A connection pool: `pg.Pool` fits. */
export interface PgPool extends PgQueryable {
  /** Checks a client out of the pool. */
  connect(): Promise<PgPoolClient>;
  /** Closes every connection of the pool. */
  end(): Promise<void>;
}
