/**
 * Opening the database `--db` names: the repository (each adapter migrates on open), and a read-only probe of the
 * stored schema version and the database's clock for `migrate --dry-run` and `doctor`. Each adapter is imported
 * only when its scheme is used, so a SQLite user needs neither pg nor mongodb installed.
 */
import { existsSync } from 'node:fs';
import { HoraeError } from '@horae/core';
import { SchemaVersionError, requirePeerDependency, type Repository } from '@horae/storage';
import type { DatabaseTarget } from './database-url.js';
import { maskSecrets } from './database-url.js';
import { CliError, EXIT_CONNECT, EXIT_FAILED } from './exit-codes.js';

/** How long a connection attempt may take before the CLI gives up (exit 3). */
const CONNECT_TIMEOUT_S = 10;

/** The secrets of a target, to mask in any message. */
export function secretsOf(target: DatabaseTarget): readonly string[] {
  return target.adapter === 'sqlite' ? [] : target.secrets;
}

/** Turns an error met while connecting into a CliError: exit 3, the password masked. A newer schema is exit 1. */
export function connectError(target: DatabaseTarget, error: unknown): CliError {
  if (error instanceof CliError) return error;
  const mask = (text: string): string => maskSecrets(text, secretsOf(target));
  if (error instanceof SchemaVersionError) return new CliError(mask(error.message), EXIT_FAILED, error.code, { cause: error });
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error && !message.includes(error.cause.message) ? `: ${error.cause.message}` : '';
  return new CliError(mask(`cannot connect to ${target.display}: ${message}${cause}`), EXIT_CONNECT, error instanceof HoraeError ? error.code : 'CANNOT_CONNECT', { cause: error });
}

/**
 * Opens the repository and migrates it (as every adapter does when it opens).
 *
 * @param target - the parsed `--db`
 * @param options - `create`: a SQLite file that does not exist is created (the worker, `migrate`); otherwise refused
 * @throws CliError exit 3 when the database cannot be reached or opened
 */
export async function openRepository(target: DatabaseTarget, options: { create?: boolean } = {}): Promise<Repository> {
  try {
    switch (target.adapter) {
      case 'sqlite': {
        if (options.create !== true && !existsSync(target.path)) {
          throw new CliError(`no SQLite database at ${target.path} (nothing was created; \`horae migrate --db ${target.display}\` creates one)`, EXIT_CONNECT, 'NO_DATABASE');
        }
        const { SqliteRepository } = await import('@horae/repo-sqlite');
        return new SqliteRepository({ database: target.path });
      }
      case 'postgres': {
        const { PostgresRepository } = await import('@horae/repo-postgres');
        // Awaited inside the try: a refused connection must reach the catch below (exit 3), not escape as a rejection.
        return await initialized(new PostgresRepository({ connectionString: withConnectTimeout(target.connectionString), schema: target.schema, poolSize: 4 }));
      }
      case 'mongo': {
        const { MongoRepository } = await import('@horae/repo-mongo');
        return await initialized(
          new MongoRepository({
            uri: target.uri,
            ...(target.dbName === undefined ? {} : { dbName: target.dbName }),
            clientOptions: { serverSelectionTimeoutMS: CONNECT_TIMEOUT_S * 1000 },
          }),
        );
      }
    }
  } catch (error) {
    throw connectError(target, error);
  }
}

function withConnectTimeout(connectionString: string): string {
  const url = new URL(connectionString);
  if (!url.searchParams.has('connect_timeout')) url.searchParams.set('connect_timeout', String(CONNECT_TIMEOUT_S));
  return url.href;
}

/** What a read-only look at the database found. */
export interface DatabaseProbe {
  /** `sqlite`, `postgres` or `mongo`. */
  adapter: DatabaseTarget['adapter'];
  /** The schema version stored (0: no Horae schema yet). */
  storedVersion: number;
  /** The newest version this adapter knows: what opening it migrates to. */
  supportedVersion: number;
  /** The database's clock minus this machine's, in ms (null: the database has no clock of its own). */
  clockSkewMs: number | null;
  /** The round trip of the clock read, in ms (null with no clock read). */
  roundTripMs: number | null;
  /** Why no skew was measured, when it was not. */
  clockNote: string | null;
}

/**
 * Reads the stored schema version and the database's clock without writing anything (no migration, no file
 * created, no WAL switch).
 *
 * @throws CliError exit 3 when the database cannot be reached
 */
export async function probeDatabase(target: DatabaseTarget): Promise<DatabaseProbe> {
  try {
    switch (target.adapter) {
      case 'sqlite':
        return await probeSqlite(target.path);
      case 'postgres':
        return await probePostgres(target.connectionString, target.schema);
      case 'mongo':
        return await probeMongo(target.uri, target.dbName);
    }
  } catch (error) {
    throw connectError(target, error);
  }
}

interface ReadonlySqlite {
  prepare(sql: string): { get(...params: unknown[]): unknown };
  close(): void;
}

async function probeSqlite(path: string): Promise<DatabaseProbe> {
  const { SCHEMA_VERSION, readSchemaVersion } = await import('@horae/repo-sqlite');
  const clockNote = 'SQLite has no server clock: every time is read from the process clock of the node that writes';
  const base = { adapter: 'sqlite' as const, supportedVersion: SCHEMA_VERSION, clockSkewMs: null, roundTripMs: null, clockNote };
  if (!existsSync(path)) return { ...base, storedVersion: 0 };
  // better-sqlite3 is the adapter's own dependency: loaded from there, so that a strict installer finds it.
  const Database = requirePeerDependency<new (file: string, options: { readonly: boolean; fileMustExist: boolean }) => ReadonlySqlite>(
    'better-sqlite3',
    '@horae/repo-sqlite',
    import.meta.resolve('@horae/repo-sqlite'),
  );
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return { ...base, storedVersion: readSchemaVersion(db as unknown as Parameters<typeof readSchemaVersion>[0]) };
  } finally {
    db.close();
  }
}

interface PgClientLike {
  connect(): Promise<unknown>;
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}

async function probePostgres(connectionString: string, schema: string): Promise<DatabaseProbe> {
  const { SCHEMA_VERSION } = await import('@horae/repo-postgres');
  const pg = requirePeerDependency<{ Client: new (options: { connectionString: string }) => PgClientLike }>('pg', '@horae/repo-postgres', import.meta.resolve('@horae/repo-postgres'));
  const client = new pg.Client({ connectionString: withConnectTimeout(connectionString) });
  // A client that failed to connect emits 'error' later on some failures; without a listener that would crash the CLI.
  (client as unknown as { on?: (event: string, listener: () => void) => void }).on?.('error', () => undefined);
  await client.connect();
  try {
    const table = await client.query('SELECT to_regclass($1) IS NOT NULL AS present', [`"${schema.replace(/"/g, '""')}".horae_migrations`]);
    let storedVersion = 0;
    if (table.rows[0]?.present === true) {
      const found = await client.query(`SELECT coalesce(max(version), 0) AS version FROM "${schema.replace(/"/g, '""')}".horae_migrations`);
      storedVersion = Number(found.rows[0]?.version ?? 0);
    }
    const before = Date.now();
    const now = await client.query('SELECT now() AS now');
    const after = Date.now();
    const serverTime = (now.rows[0]?.now as Date).getTime();
    return {
      adapter: 'postgres',
      storedVersion,
      supportedVersion: SCHEMA_VERSION,
      clockSkewMs: Math.round(serverTime - (before + after) / 2),
      roundTripMs: after - before,
      clockNote: null,
    };
  } finally {
    await client.end();
  }
}

interface MongoClientProbe {
  connect(): Promise<unknown>;
  db(name?: string): {
    command(command: Record<string, unknown>): Promise<Record<string, unknown>>;
    collection(name: string): { findOne(filter: Record<string, unknown>): Promise<Record<string, unknown> | null> };
  };
  close(): Promise<void>;
}

async function probeMongo(uri: string, dbName: string | undefined): Promise<DatabaseProbe> {
  const { SCHEMA_VERSION } = await import('@horae/repo-mongo');
  const mongodb = requirePeerDependency<{ MongoClient: new (uri: string, options: Record<string, unknown>) => MongoClientProbe }>(
    'mongodb',
    '@horae/repo-mongo',
    import.meta.resolve('@horae/repo-mongo'),
  );
  const client = new mongodb.MongoClient(uri, { serverSelectionTimeoutMS: CONNECT_TIMEOUT_S * 1000 });
  await client.connect();
  try {
    const db = client.db(dbName);
    // The adapter's default collection prefix; the schema version is the `schema` document of its meta collection.
    const stored = await db.collection('horae_meta').findOne({ _id: 'schema' });
    const storedVersion = typeof stored?.version === 'number' ? stored.version : 0;
    const before = Date.now();
    const hello = await db.command({ hello: 1 });
    const after = Date.now();
    const localTime = hello.localTime instanceof Date ? hello.localTime.getTime() : null;
    return {
      adapter: 'mongo',
      storedVersion,
      supportedVersion: SCHEMA_VERSION,
      clockSkewMs: localTime === null ? null : Math.round(localTime - (before + after) / 2),
      roundTripMs: localTime === null ? null : after - before,
      clockNote: localTime === null ? 'the server did not report its time (hello.localTime)' : null,
    };
  } finally {
    await client.close();
  }
}

/** Connects (and migrates) a server repository now, so that a refused connection is reported at once; closes it when that fails. */
async function initialized<R extends { init(): Promise<void>; close(): Promise<void> }>(repository: R): Promise<R> {
  try {
    await repository.init();
  } catch (error) {
    await repository.close().catch(() => undefined);
    throw error;
  }
  return repository;
}
