/**
 * The error of a SQLite database whose file, or whose write-ahead log, is no longer the one the repository opened.
 */
import { HoraeError } from '@horae/core';

/** Which file of a SQLite database changed under an open repository: the database itself, or its `-wal` log. */
export type DatabaseFileKind = 'database' | 'wal';

/** What happened to it: nothing is at the path any more, or another file is. */
export type DatabaseFileChange = 'deleted' | 'replaced';

/**
 * The SQLite database file a repository opened (or its `-wal` log) was deleted, or another file was put at its path
 * (a rename over it, a restore from a backup), while the repository had it open. The connection still writes to the
 * file it opened, which no longer has that name: those writes would be lost at the next start (or, for a stale log
 * left beside a replacement, damage it). So the repository refuses every call from then on with this error.
 *
 * It is not a RepositoryError: no retry can cure it (the storage layer's DurableWriter throws it at once instead of
 * retrying). Restart the process once the right file is in place: the new repository opens whatever is at the path.
 */
export class DatabaseFileReplacedError extends HoraeError {
  /**
   * @param path - the database file's path, resolved as SQLite resolved it at open
   * @param file - which file changed: the database or its `-wal` log
   * @param change - whether nothing or another file is at the path now
   */
  constructor(
    readonly path: string,
    readonly file: DatabaseFileKind,
    readonly change: DatabaseFileChange,
  ) {
    const what = file === 'database' ? `the SQLite database file "${path}"` : `the write-ahead log "${path}-wal" of the SQLite database`;
    const how = change === 'deleted' ? 'was deleted' : 'was replaced by another file';
    super(
      'DATABASE_FILE_REPLACED',
      `${what} ${how} while this repository had it open: its writes would go to a file that no longer has that name and be lost at the next start, so it refuses every call. Put the right file back in place and restart the process`,
    );
  }
}
