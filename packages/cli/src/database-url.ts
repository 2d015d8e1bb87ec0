/**
 * The `--db` / `HORAE_DB` forms: which adapter, where, and the text to show for it (never a password).
 */
import { resolve } from 'node:path';
import { CliError, EXIT_CONNECT } from './exit-codes.js';

/** A database the CLI can open, parsed from `--db`. */
export type DatabaseTarget =
  | { adapter: 'sqlite'; path: string; display: string }
  | { adapter: 'postgres'; connectionString: string; schema: string; display: string; secrets: string[] }
  | { adapter: 'mongo'; uri: string; dbName: string | undefined; display: string; secrets: string[] };

/** The forms, for error messages and `--help`. */
export const DATABASE_FORMS = 'sqlite:./path.db (or a path ending in .db), postgres://… or postgresql://… (?schema=name), mongodb://… or mongodb+srv://… (?db=name or /name)';

/**
 * Replaces the password of any `scheme://user:password@host` in `text` with `***`, and each of `secrets` wherever it
 * appears (a driver may quote the connection string, or the decoded password, in its message).
 */
export function maskSecrets(text: string, secrets: readonly string[] = []): string {
  let masked = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s]*)@/gi, '$1***@');
  for (const secret of secrets) if (secret.length >= 3) masked = masked.split(secret).join('***');
  return masked;
}

function passwordsOf(url: URL): string[] {
  if (url.password === '') return [];
  let decoded = url.password;
  try {
    decoded = decodeURIComponent(url.password);
  } catch {
    // a malformed escape: the raw form is masked anyway
  }
  return [...new Set([url.password, decoded])];
}

function withoutPassword(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password !== '') copy.password = '***';
  return copy.href;
}

/**
 * Parses `--db`.
 *
 * @param value - the option or `HORAE_DB`; undefined when neither was given
 * @param cwd - where a relative SQLite path is resolved
 * @throws CliError (exit 3, cannot connect) when it is missing or its scheme is unknown; the message masks any password
 */
export function parseDatabaseUrl(value: string | undefined, cwd: string): DatabaseTarget {
  if (value === undefined || value.trim() === '') {
    throw new CliError(`no database: pass --db <url> or set HORAE_DB (${DATABASE_FORMS})`, EXIT_CONNECT, 'NO_DATABASE');
  }
  const text = value.trim();
  if (text.startsWith('sqlite:')) {
    const rest = text.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (rest === '') throw new CliError('sqlite: needs a file path, such as sqlite:./horae.db', EXIT_CONNECT, 'BAD_DATABASE_URL');
    return { adapter: 'sqlite', path: resolve(cwd, rest), display: `sqlite:${rest}` };
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && /\.(db|sqlite|sqlite3)$/i.test(text)) {
    return { adapter: 'sqlite', path: resolve(cwd, text), display: `sqlite:${text}` };
  }
  if (/^mongodb(\+srv)?:\/\//i.test(text)) return parseMongoUrl(text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`cannot read the database URL ${JSON.stringify(maskSecrets(text))}: expected ${DATABASE_FORMS}`, EXIT_CONNECT, 'BAD_DATABASE_URL');
  }
  const secrets = passwordsOf(url);
  if (url.protocol === 'postgres:' || url.protocol === 'postgresql:') {
    const schema = url.searchParams.get('schema') ?? 'horae';
    url.searchParams.delete('schema');
    return { adapter: 'postgres', connectionString: url.href, schema, display: withoutPassword(url), secrets };
  }
  throw new CliError(`unknown database scheme ${JSON.stringify(url.protocol)} in --db: expected ${DATABASE_FORMS}`, EXIT_CONNECT, 'BAD_DATABASE_URL');
}

/**
 * A MongoDB connection string may list several hosts (`mongodb://a:27017,b:27017/app`), which WHATWG URL cannot
 * read, so it is taken apart by hand: the credentials, the database (path or `?db=`), the rest handed to the driver.
 */
function parseMongoUrl(text: string): DatabaseTarget {
  const match = /^(mongodb(?:\+srv)?:\/\/)(?:([^@/]*)@)?([^/?]*)(\/[^?]*)?(\?.*)?$/i.exec(text);
  if (match === null || match[3] === '') {
    throw new CliError(`cannot read the MongoDB URL ${JSON.stringify(maskSecrets(text))}: expected mongodb://host[:port][/db][?db=name]`, EXIT_CONNECT, 'BAD_DATABASE_URL');
  }
  const [, scheme = '', credentials, hosts = '', path = '', query = ''] = match;
  const params = new URLSearchParams(query.replace(/^\?/, ''));
  const fromQuery = params.get('db');
  params.delete('db');
  const fromPath = decodeURIComponent(path.replace(/^\//, ''));
  const dbName = fromQuery ?? (fromPath === '' ? undefined : fromPath);
  const rest = params.toString();
  const uri = `${scheme}${credentials === undefined ? '' : `${credentials}@`}${hosts}/${path.replace(/^\//, '')}${rest === '' ? '' : `?${rest}`}`;
  const secrets: string[] = [];
  const colon = credentials?.indexOf(':') ?? -1;
  if (credentials !== undefined && colon >= 0) {
    const raw = credentials.slice(colon + 1);
    secrets.push(raw);
    try {
      secrets.push(decodeURIComponent(raw));
    } catch {
      // a malformed escape: the raw form is masked anyway
    }
  }
  return { adapter: 'mongo', uri, dbName, display: maskSecrets(uri, secrets), secrets: [...new Set(secrets)].filter((s) => s !== '') };
}
