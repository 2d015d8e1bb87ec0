/**
 * Loading a database driver that an adapter takes as a peer dependency: the application installs it (and may hand
 * the adapter a pool or client of its own), so a missing driver is a setup mistake that deserves a sentence saying
 * what to install, not an ERR_MODULE_NOT_FOUND from inside the adapter.
 *
 * The driver is required synchronously rather than imported: a try/catch around a static import is impossible, and
 * a dynamic `await import()` at the top level would stop the adapter from being `require()`d from CommonJS (Node
 * refuses to require an ES module graph with top-level await).
 */
import { createRequire } from 'node:module';
import { HoraeError } from '@horae/core';

/**
 * Requires `specifier` as the module at `from` would resolve it, turning "not installed" into a HoraeError that
 * names the package to install.
 *
 * @param specifier - the driver package, e.g. `'pg'`
 * @param adapter - the package that needs it, named in the message
 * @param from - where resolution starts: the adapter module's `import.meta.url`, so that the driver is found from
 * the adapter's own install
 * @returns the driver's CommonJS exports
 * @throws HoraeError with code `MISSING_DEPENDENCY` when `specifier` cannot be resolved; any other failure (a driver
 * that is installed but throws while loading) is rethrown as is, since installing it again would not help
 *
 * ### Examples
 * ```ts
 * import type PgModule from 'pg';
 * export const pg = requirePeerDependency<typeof PgModule>('pg', '@horae/repo-postgres', import.meta.url);
 * ```
 */
export function requirePeerDependency<T>(specifier: string, adapter: string, from: string | URL): T {
  const load = createRequire(from);
  try {
    // Resolving first tells "not installed" apart from "installed but one of its own imports is missing", which
    // both report MODULE_NOT_FOUND from require().
    load.resolve(specifier);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new HoraeError('MISSING_DEPENDENCY', `${adapter} needs the '${specifier}' package: npm install ${specifier}`, { cause: error });
  }
  return load(specifier) as T;
}
