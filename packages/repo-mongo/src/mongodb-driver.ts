/**
 * Loads `mongodb`, the driver the adapter opens its own client with when given a `uri`. `mongodb` is a peer
 * dependency: the application installs it (and usually hands the adapter a `Db` or `MongoClient` of its
 * own), so a missing `mongodb` is a setup mistake that deserves a sentence saying what to install, not an
 * ERR_MODULE_NOT_FOUND from inside the adapter.
 *
 * The driver is required synchronously rather than imported: a try/catch around a static import is
 * impossible, and a dynamic `await import()` at the top level would stop the package from being `require()`d
 * from CommonJS (Node refuses to require an ES module graph with top-level await).
 */
import { createRequire } from 'node:module';
import type * as MongoModule from 'mongodb';
import { HoraeError } from '@horae/core';

/**
 * Requires `specifier` from this package's location, turning "not installed" into a HoraeError that names
 * the package to install.
 *
 * @param specifier - the driver package, e.g. `'mongodb'`
 * @param adapter - the package that needs it, named in the message
 * @returns the driver's CommonJS exports
 * @throws HoraeError with code `MISSING_DEPENDENCY` when `specifier` cannot be resolved; any other failure
 * (a driver that is installed but throws while loading) is rethrown as is, since installing it again would
 * not help
 */
export function requireDriver<T>(specifier: string, adapter: string): T {
  const load = createRequire(import.meta.url);
  try {
    // Resolving first tells "not installed" apart from "installed but one of its own imports is missing",
    // which both report MODULE_NOT_FOUND from require().
    load.resolve(specifier);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new HoraeError('MISSING_DEPENDENCY', `${adapter} needs the '${specifier}' package: npm install ${specifier}`, { cause: error });
  }
  return load(specifier) as T;
}

/**
 * The driver's `MongoClient` class, loaded when this package is imported.
 *
 * @throws HoraeError with code `MISSING_DEPENDENCY`, at import, when `mongodb` is not installed
 */
export const MongoClient: typeof MongoModule.MongoClient = requireDriver<typeof MongoModule>('mongodb', '@horae/repo-mongo').MongoClient;

/** An instance of the driver's `MongoClient`. */
export type MongoClient = MongoModule.MongoClient;
