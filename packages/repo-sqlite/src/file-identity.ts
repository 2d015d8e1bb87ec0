/**
 * Whether the SQLite files a repository opened are still the ones at their paths.
 *
 * A file is known by its identity, (device, inode), not by its name: `rm horae.db` or `mv other.db horae.db` while a
 * connection is open leaves the connection writing to the inode it opened, which no longer has that name. SQLite
 * notices this only for rollback journals (SQLITE_READONLY_DBMOVED); in WAL mode the writes go on without an error
 * and are lost at the next start. So the repository compares the identity of what is at each path now with what
 * was there at open, as SQLite's own unix VFS does for its check.
 *
 * The `-wal` log matters as much as the database: in WAL mode it holds every commit not yet checkpointed. Deleted,
 * those commits (and the next ones) live only in an unnamed file; replaced, the connection and the other processes
 * no longer share one log. The `-shm` index is not watched: losing it loses no commit (the next start rebuilds it
 * from the log).
 *
 * What is left at the paths matters too. SQLite does not checkpoint a database file that moved when its last
 * connection closes, so the log of the old file stays at the `-wal` path, and the next open of whatever file is at the
 * database path then would read that log as its own: pages of the old database written over the new one. So once the
 * database file is found deleted, moved or replaced, the repository checkpoints the log into the file it belongs to
 * (kept under its new name when it was moved away), then the guard clears the `-wal` and `-shm` paths, when they still
 * name the files the repository opened (see {@link DatabaseFileGuard.clearStaleLog}).
 */
import { renameSync, statSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { DatabaseFileReplacedError, type DatabaseFileKind } from './database-file-replaced-error.js';

/** The identity of a file, whatever its name: its device and inode numbers. */
export interface FileIdentity {
  /** `st_dev`. */
  readonly dev: bigint;
  /** `st_ino`. */
  readonly ino: bigint;
}

/** The identities a {@link DatabaseFileGuard} holds, as decimal strings (so that a worker thread receives them as they are). */
export interface FileIdentityStrings {
  /** The database file's `dev:ino`. */
  readonly database: string;
  /** The `-wal` log's `dev:ino`; null when it did not exist yet at open. */
  readonly wal: string | null;
}

/**
 * The identity of what is at `path` now.
 *
 * @param path - a file path
 * @returns its identity, or null when nothing is there (no such file, or a part of the path is no directory)
 * @throws the error of `stat` when it cannot tell (EACCES, EIO…)
 */
export function identityAt(path: string): FileIdentity | null {
  try {
    const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
    return stat === undefined ? null : { dev: stat.dev, ino: stat.ino };
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOTDIR') return null;
    throw error;
  }
}

/** `dev:ino` of an identity, the form a worker thread compares. */
export function identityString(identity: FileIdentity): string {
  return `${identity.dev}:${identity.ino}`;
}

/** {@link identityAt}, with null when `stat` cannot tell either. */
function identityOrNull(path: string): FileIdentity | null {
  try {
    return identityAt(path);
  } catch {
    return null;
  }
}

function sameFile(a: FileIdentity | null, b: FileIdentity): boolean {
  return a !== null && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Watches that the database file at a path, and its `-wal` log, are the ones a repository opened.
 *
 * Rules: the identities are read when the guard is made (right after the open; a `-wal` that does not exist yet is
 * adopted at the first check that finds one); the first check that finds a path empty or naming another file fails
 * for good: that check and every later {@link DatabaseFileGuard.assertIntact} throw the same
 * {@link DatabaseFileReplacedError}, and `onFailure` is called once, before the first throw. A checkpoint that
 * truncates the log, or VACUUM, keeps both files' identities: they raise no alarm.
 */
export class DatabaseFileGuard {
  /** The database file's path, absolute. */
  readonly path: string;
  readonly #database: FileIdentity;
  #wal: FileIdentity | null;
  #shm: FileIdentity | null;
  #failure: DatabaseFileReplacedError | null = null;
  readonly #onFailure: (error: DatabaseFileReplacedError) => void;

  /**
   * @param path - the absolute path of the database file the connection has just opened
   * @param onFailure - called once, with the error, when a check first finds a file changed; must not throw
   * @throws DatabaseFileReplacedError when nothing is at `path` (it was deleted between the open and now)
   */
  constructor(path: string, onFailure: (error: DatabaseFileReplacedError) => void) {
    this.path = path;
    this.#onFailure = onFailure;
    const database = identityAt(path);
    if (database === null) throw new DatabaseFileReplacedError(path, 'database', 'deleted');
    this.#database = database;
    this.#wal = identityOrNull(`${path}-wal`);
    this.#shm = identityOrNull(`${path}-shm`);
  }

  /** The error of the failed check, or null while the files are the ones opened. */
  get failure(): DatabaseFileReplacedError | null {
    return this.#failure;
  }

  /** The identities held, for a worker thread that checks the same paths. */
  get identities(): FileIdentityStrings {
    return { database: identityString(this.#database), wal: this.#wal === null ? null : identityString(this.#wal) };
  }

  /**
   * Throws the error of an earlier failed check; reads no file (cheap enough for every call).
   *
   * @throws DatabaseFileReplacedError once a check has failed
   */
  assertIntact(): void {
    if (this.#failure !== null) throw this.#failure;
  }

  /**
   * Compares what is at the two paths now with what was opened: two `stat` calls, about 2-3 µs.
   *
   * @throws DatabaseFileReplacedError when either path is empty or names another file, or an earlier check failed
   */
  check(): void {
    this.assertIntact();
    let database: FileIdentity | null;
    let wal: FileIdentity | null;
    try {
      database = identityAt(this.path);
      wal = identityAt(`${this.path}-wal`);
    } catch {
      // A stat that cannot tell (a permission changed on a directory, an I/O error) proves nothing moved: failing the
      // batch for it would fail writes that committed where they should. The next check looks again.
      return;
    }
    if (!sameFile(database, this.#database)) this.#fail('database', database === null ? 'deleted' : 'replaced');
    if (this.#wal === null) {
      this.#wal = wal;
      this.#shm = identityOrNull(`${this.path}-shm`);
      return;
    }
    if (!sameFile(wal, this.#wal)) this.#fail('wal', wal === null ? 'deleted' : 'replaced');
  }

  /**
   * Checks as {@link DatabaseFileGuard.check} does, without throwing.
   *
   * @returns false once a check has failed
   */
  isIntact(): boolean {
    try {
      this.check();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Whether closing the connection is safe: true while no check has failed; after a failure, true unless another
   * file is at the `-wal` path. Closing the last connection of a database file that has not moved checkpoints its log
   * into it and deletes the `-wal` path: when only the log was deleted, that copies the commits of the unnamed log
   * into the database file, which still has its name. But it would delete another file put at the `-wal` path.
   */
  mayClose(): boolean {
    if (this.#failure === null) return true;
    try {
      const wal = identityAt(`${this.path}-wal`);
      return wal === null || this.#wal === null || sameFile(wal, this.#wal);
    } catch {
      return false; // cannot tell: leaving the connection open deletes nothing
    }
  }

  /**
   * After a failure about the database file (deleted, moved away, or another file at its path), clears the `-wal` and
   * `-shm` paths where they still name the files this repository opened: that log belongs to the old file, and left
   * there it would be read as the log of the file at the database path at its next open. The caller checkpoints the
   * log into the file it belongs to first (the connection still holds that file, under whatever name it has now), so
   * an emptied log is removed; a log that still holds commits (the checkpoint could not finish) is renamed aside,
   * `<path>-wal.orphaned-<time>`, never deleted. Does nothing while no check has failed, nor after a failure about the
   * log itself.
   *
   * @returns the path a log holding commits was renamed to, if one was
   */
  clearStaleLog(): string | undefined {
    if (this.#failure?.file !== 'database') return undefined;
    let setAside: string | undefined;
    for (const [suffix, opened] of [['-wal', this.#wal], ['-shm', this.#shm]] as const) {
      const path = `${this.path}${suffix}`;
      if (opened === null || !sameFile(identityOrNull(path), opened)) continue;
      try {
        if (suffix === '-wal' && statSync(path).size > 0) {
          setAside = `${path}.orphaned-${Date.now()}`;
          renameSync(path, setAside);
        } else {
          unlinkSync(path);
        }
      } catch {
        // Gone meanwhile, or not ours to move: nothing to pair with the file at the database path.
      }
    }
    return setAside;
  }

  #fail(file: DatabaseFileKind, change: 'deleted' | 'replaced'): never {
    const error = new DatabaseFileReplacedError(this.path, file, change);
    this.#failure = error;
    this.#onFailure(error);
    throw error;
  }
}

/**
 * Watches the file a repository opened at `database`, if it is a file: `':memory:'`, `''` (a private temporary
 * database) and `file:` URIs are not watched. A failed check is reported once as a process warning
 * (`process.emitWarning`: Node prints it on stderr unless run with `--no-warnings`, and `process.on('warning')` receives
 * it), then `onFailure` runs, which checkpoints and clears the stale log (see {@link DatabaseFileGuard.clearStaleLog}).
 *
 * @param database - the path the repository opened, as given (resolved against the current directory, as SQLite did)
 * @param onFailure - what the repository does once a check fails (checkpoint the log into the file it belongs to,
 *   {@link DatabaseFileGuard.clearStaleLog}, stop its checkpoints, close its connection when
 *   {@link DatabaseFileGuard.mayClose}); must not throw
 * @returns the guard, or null when there is no file to watch
 * @throws DatabaseFileReplacedError when nothing is at the path any more
 */
export function watchDatabaseFile(database: string, onFailure: (guard: DatabaseFileGuard) => void): DatabaseFileGuard | null {
  if (database === '' || database === ':memory:' || database.startsWith('file:')) return null;
  const guard: DatabaseFileGuard = new DatabaseFileGuard(resolve(database), (error) => {
    process.emitWarning(error);
    onFailure(guard);
  });
  return guard;
}
