/**
 * Background WAL checkpoints: a worker thread with its own connection to the file copies the WAL back into the
 * database, so that the copy and its fsync never block the event loop. SQLite's automatic checkpoint runs inside
 * the COMMIT that crosses 1,000 WAL pages, on the thread that commits: a stall of several milliseconds for every
 * timer and run waiting behind it (a quarter of the wall time of a drain on the 2-core test machine).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { SqliteDatabase } from './driver.js';
import type { FileIdentityStrings } from './file-identity.js';

/** SQLite's default `wal_autocheckpoint`: what the connection goes back to when the worker is not running. */
const AUTOCHECKPOINT_PAGES = 1000;

/**
 * The connection's own automatic checkpoint while the worker runs: a backstop, not off. The WAL only starts over
 * from its beginning when a write transaction finds every frame already copied back, and under sustained writes
 * the worker's checkpoint always ends after the connection has written more, so with the connection's checkpoint
 * off the WAL file grew without bound (150 MB after a drain of 20,000 tasks, 313 MB after 40,000). At this size
 * the connection checkpoints the few frames the worker has not copied yet, the WAL wraps, and it stays near
 * 4,000 pages (16 MB with 4 KB pages), for 3-5% of a drain's throughput.
 */
export const BACKSTOP_AUTOCHECKPOINT_PAGES = 4000;

/** What the worker receives. */
interface CheckpointWorkerData {
  /** The resolved path of better-sqlite3, so the worker loads the driver the adapter uses. */
  driver: string;
  /** The database file. */
  path: string;
  /** `PRAGMA synchronous` of the checkpoints: the repository's level, so they sync as an inline one would. */
  synchronous: string;
  /** How often it checkpoints, in ms. */
  intervalMs: number;
  /** The identities of the files the repository opened, `dev:ino`; null: not checked. */
  identities: FileIdentityStrings | null;
}

// CommonJS, run with `eval`: no file to resolve next to the module, whether it runs from dist/ or from src/.
// PASSIVE never waits for readers or writers; with busy_timeout 0, a round that finds another checkpointer (this
// process's or another's) at work is skipped and the next one catches up.
// Before its first statement and before each round it checks that the paths still name the files the repository
// opened: a worker that opened a path another file was renamed onto would checkpoint the repository's log into that
// file. Once they differ it stops checkpointing and says 'moved'; the repository decides what follows.
const WORKER_SOURCE = `
const { statSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const ids = workerData.identities;
const at = (path) => {
  const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
  return stat === undefined ? null : stat.dev + ':' + stat.ino;
};
const moved = () => ids !== null && (at(workerData.path) !== ids.database || (ids.wal !== null && at(workerData.path + '-wal') !== ids.wal));
let db = null;
try {
  db = new Database(workerData.path, { fileMustExist: true });
} catch (error) {
  if (!moved()) throw error;
}
let stopped = db === null || moved();
const checkpoint = () => {
  if (stopped) return;
  if (moved()) {
    stopped = true;
    parentPort.postMessage('moved');
    return;
  }
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // SQLITE_BUSY: another checkpoint is running; the next round catches up.
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'close') return;
  clearInterval(timer);
  checkpoint();
  if (db !== null) db.close();
  parentPort.close();
});
if (stopped) {
  parentPort.postMessage('moved');
} else {
  db.pragma('busy_timeout = 0');
  db.pragma('synchronous = ' + workerData.synchronous);
  parentPort.postMessage('ready');
}
`;

/** How a {@link Checkpointer} runs. */
export interface CheckpointerOptions {
  /** The database file (not `:memory:`). */
  path: string;
  /** The repository's `PRAGMA synchronous` level. */
  synchronous: string;
  /** How often the worker checkpoints, in ms. */
  intervalMs: number;
  /**
   * The identities of the files the repository opened: the worker checks that the paths still name them before its
   * first statement and before each checkpoint, and stops checkpointing once they do not.
   * @defaultValue null: not checked
   */
  identities?: FileIdentityStrings | null;
  /** Called (on the repository's thread) when the worker found a path naming another file, or none. */
  onFileMoved?: () => void;
}

/**
 * Runs the WAL checkpoints of one connection in a worker thread.
 *
 * Rules: once the worker has opened the file, the connection's automatic checkpoint is raised to a backstop of
 * {@link BACKSTOP_AUTOCHECKPOINT_PAGES} (so the WAL stays bounded under sustained writes, see there), and set
 * back to SQLite's default of 1,000 pages if the worker fails or exits early; the worker never keeps the process
 * alive; a file shared by several processes is checkpointed by whichever gets there first; given the identities of the
 * files the repository opened, the worker never runs a statement, a checkpoint included, once the paths name other
 * files (or none), and reports it once through `onFileMoved`.
 */
export class Checkpointer {
  readonly #db: SqliteDatabase;
  readonly #worker: Worker;
  /** Resolves once the worker thread has ended (its connection closed: no more file activity from it). */
  readonly #exited: Promise<void>;
  #closed = false;

  /**
   * Starts the worker.
   *
   * @param db - the repository's connection, whose automatic checkpoint the worker takes over
   * @param options - the file, the sync level, the interval
   * @throws the error of `new Worker` when no thread can be started (the caller keeps inline checkpoints)
   */
  constructor(db: SqliteDatabase, options: CheckpointerOptions) {
    this.#db = db;
    const workerData: CheckpointWorkerData = {
      driver: createRequire(import.meta.url).resolve('better-sqlite3'),
      path: options.path,
      synchronous: options.synchronous,
      intervalMs: options.intervalMs,
      identities: options.identities ?? null,
    };
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
    this.#worker.unref();
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.on('message', (message) => {
      if (message === 'ready' && !this.#closed && this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT_PAGES}`);
      // After close() the worker's last round may find the -wal gone: the repository's own close deleted it.
      if (message === 'moved' && !this.#closed) {
        // The worker checkpoints no more: hand the checkpoints back to the connection and let the worker end.
        options.onFileMoved?.();
        void this.close();
      }
    });
    this.#worker.on('error', () => this.#fallBack());
    this.#worker.on('exit', () => this.#fallBack());
  }

  /**
   * Stops the worker after one last checkpoint; the connection checkpoints inline again at once. Idempotent.
   *
   * @returns resolves once the worker has closed its connection, so that nothing touches the file (its `-wal` and
   * `-shm` companions included) after it
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#fallBack();
      this.#worker.postMessage('close');
      // Unref'd so that a running worker never keeps the process alive; a caller awaiting its end must be able to.
      this.#worker.ref();
    }
    return this.#exited;
  }

  #fallBack(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
  }
}
