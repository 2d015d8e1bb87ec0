import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DurableWriter, type RepositoryErrorReport } from '@horae/storage';
import { realClock } from '@horae/core';
import { DatabaseFileReplacedError, SqliteRepository } from '@horae/repo-sqlite';
import { Checkpointer } from '../src/checkpointer.js';
import { identityAt, identityString } from '../src/file-identity.js';
import { tempDir, type TempDir } from './temp-database.js';

const task = (id: string): { id: string; workId: string; scheduledAt: Date } => ({ id, workId: 'w', scheduledAt: new Date(0) });

/** Collects the process warnings emitted while `run` runs (they are emitted on the next tick). */
async function warningsDuring(run: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const listener = (warning: Error): void => void seen.push(warning);
  process.on('warning', listener);
  try {
    await run();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen;
}

describe('SqliteRepository: a database file deleted or replaced while open', () => {
  let dir: TempDir;
  let repository: SqliteRepository;
  beforeEach(() => {
    dir = tempDir();
    repository = new SqliteRepository({ database: dir.file(), checkpoint: 'inline' });
  });
  afterEach(async () => {
    await repository.close().catch(() => undefined);
    dir.remove();
  });

  it('a write after the file was deleted fails with DatabaseFileReplacedError, and so does every later call', async () => {
    await repository.insert(task('before'));
    rmSync(dir.file());
    const warnings = await warningsDuring(async () => {
      await expect(repository.insert(task('after'))).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED', file: 'database', change: 'deleted' });
    });
    expect(warnings.map((w) => w.name)).toEqual(['DatabaseFileReplacedError']);
    const later = [
      repository.insert(task('later')),
      repository.getById('before'),
      repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 10 }),
      repository.countByState(),
      repository.getCursor(),
    ];
    for (const call of later) await expect(call).rejects.toBeInstanceOf(DatabaseFileReplacedError);
    // Nothing was written at the path meanwhile: no file came back there.
    expect(existsSync(dir.file())).toBe(false);
  });

  it('a write after another file was renamed over it fails; the replacement is left intact, without the stale log', async () => {
    await repository.insert(task('mine'));
    const other = new SqliteRepository({ database: dir.file('other.db'), checkpoint: 'inline' });
    await other.insert(task('theirs'));
    await other.close();
    renameSync(dir.file('other.db'), dir.file());
    await expect(repository.insert(task('lost'))).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED', file: 'database', change: 'replaced' });
    await expect(repository.getById('mine')).rejects.toBeInstanceOf(DatabaseFileReplacedError);
    await repository.close();
    // The log of the old file was not left at the -wal path to pair with the replacement.
    const reopened = new SqliteRepository({ database: dir.file(), checkpoint: 'inline' });
    try {
      expect((await reopened.list({ limit: 10 })).tasks.map((t) => t.id)).toEqual(['theirs']);
    } finally {
      await reopened.close();
    }
    const check = new Database(dir.file(), { readonly: true });
    expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    check.close();
  });

  it('a file moved away keeps every commit made before the move: its log is checkpointed into it, not deleted', async () => {
    // Commits still in the -wal log (not checkpointed yet) belong to the file that moved: deleting the log at the
    // old path would take them from it.
    await repository.insert(task('one'));
    await repository.insert(task('two'));
    expect(statSync(`${dir.file()}-wal`).size).toBeGreaterThan(0);
    renameSync(dir.file(), dir.file('moved.db'));
    await expect(repository.insert(task('after'))).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED', file: 'database', change: 'deleted' });
    await repository.close();
    expect(existsSync(`${dir.file()}-wal`), 'no log left at the old path to pair with a file put there later').toBe(false);
    const moved = new SqliteRepository({ database: dir.file('moved.db'), checkpoint: 'inline' });
    try {
      expect((await moved.list({ limit: 10 })).tasks.map((t) => t.id).sort()).toEqual(['one', 'two']);
    } finally {
      await moved.close();
    }
  });

  it('a log that still holds commits (its checkpoint blocked by a reader) is renamed aside, never deleted', async () => {
    await repository.insert(task('one'));
    // Another connection reads in a transaction: the checkpoint cannot take the log's commits past its snapshot.
    const reader = new Database(dir.file());
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM horae_tasks').get();
    await repository.insert(task('two'));
    renameSync(dir.file(), dir.file('moved.db'));
    const warnings = await warningsDuring(async () => {
      await expect(repository.insert(task('after'))).rejects.toBeInstanceOf(DatabaseFileReplacedError);
    });
    reader.exec('COMMIT');
    reader.close();
    await repository.close();
    const orphaned = readdirSync(dir.path).filter((name) => name.includes('-wal.orphaned-'));
    expect(orphaned).toHaveLength(1);
    expect(statSync(`${dir.path}/${orphaned[0]!}`).size).toBeGreaterThan(0);
    expect(existsSync(`${dir.file()}-wal`)).toBe(false);
    expect(warnings.map((w) => (w as Error & { code?: string }).code)).toContain('HORAE_ORPHANED_WAL');
  });

  it('a write after the -wal log was deleted fails; closing copies the commits of the unnamed log into the database file', async () => {
    await repository.insert(task('committed'));
    rmSync(dir.file('horae.db-wal'));
    await expect(repository.insert(task('after'))).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED', file: 'wal', change: 'deleted' });
    await repository.close();
    const reopened = new SqliteRepository({ database: dir.file(), checkpoint: 'inline' });
    try {
      expect((await reopened.getById('committed')).id).toBe('committed');
    } finally {
      await reopened.close();
    }
  });

  it('a write after another file was put at the -wal path fails, and closing leaves that file where it is', async () => {
    await repository.insert(task('committed'));
    writeFileSync(dir.file('junk'), 'not a log of this database');
    renameSync(dir.file('junk'), dir.file('horae.db-wal'));
    await expect(repository.insert(task('after'))).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED', file: 'wal', change: 'replaced' });
    // SQLite deletes the -wal path when its last connection closes: the connection stays open rather than delete it.
    await repository.close();
    expect(readFileSync(dir.file('horae.db-wal'), 'utf8')).toBe('not a log of this database');
  });

  it('writes queued in the same batch as the failing one all fail; none resolves', async () => {
    rmSync(dir.file());
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => repository.insert(task(`t-${i}`))));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill('rejected'));
    for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(DatabaseFileReplacedError);
  });

  it("the storage layer's DurableWriter throws it at once instead of retrying it as an outage", async () => {
    rmSync(dir.file());
    const reports: RepositoryErrorReport[] = [];
    const writer = new DurableWriter({ clock: realClock, onError: (report) => reports.push(report) });
    await expect(writer.run('insert', 'x', () => repository.insert(task('x')))).rejects.toBeInstanceOf(DatabaseFileReplacedError);
    expect(reports).toEqual([]);
    expect(writer.inFlight).toBe(0);
  });
});

describe('SqliteRepository: no false alarm', () => {
  let dir: TempDir;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it('a normal run with VACUUM and a checkpoint that truncates the log, by another connection, goes on', async () => {
    const repository = new SqliteRepository({ database: dir.file() });
    const other = new Database(dir.file());
    try {
      for (let i = 0; i < 150; i++) await repository.insert(task(`a-${i}`));
      other.exec('VACUUM');
      other.pragma('wal_checkpoint(TRUNCATE)');
      for (let i = 0; i < 150; i++) await repository.insert(task(`b-${i}`));
      const claimed = await repository.claimDue({ owner: 'n', leaseMs: 60_000, limit: 300 });
      await Promise.all(claimed.map((t) => repository.markAsStarted(t.id, t.lease!.token)));
      other.pragma('wal_checkpoint(TRUNCATE)');
      await Promise.all(claimed.map((t) => repository.markAsDone(t.id, t.lease!.token)));
      expect((await repository.countByState()).Done).toBe(300);
    } finally {
      other.close();
      await repository.close();
    }
  });

  it('closing a repository whose checkpoint thread runs raises no alarm (its close deletes the -wal it checked)', async () => {
    const repository = new SqliteRepository({ database: dir.file() });
    const warnings = await warningsDuring(async () => {
      const size = statSync(dir.file()).size;
      for (let i = 0; i < 150; i++) await repository.insert(task(`t-${i}`));
      // The thread runs once it has copied the log into the database file (the connection's own checkpoint would not
      // before 1,000 pages).
      await vi.waitFor(() => expect(statSync(dir.file()).size).toBeGreaterThan(size), { timeout: 5_000 });
      await repository.close();
    });
    expect(warnings).toEqual([]);
  });

  it("':memory:' databases have no file to check and work as before", async () => {
    const repository = new SqliteRepository({ database: ':memory:' });
    for (let i = 0; i < 5; i++) await repository.insert(task(`m-${i}`));
    expect((await repository.countByState()).Initialized).toBe(5);
    await repository.close();
  });

  it('a relative path keeps naming the file opened when the process changes directory', async () => {
    const cwd = process.cwd();
    process.chdir(dir.path);
    let repository: SqliteRepository;
    try {
      repository = new SqliteRepository({ database: 'relative.db', checkpoint: 'inline' });
    } finally {
      process.chdir(cwd);
    }
    await repository.insert(task('r'));
    expect((await repository.getById('r')).id).toBe('r');
    await repository.close();
  });
});

describe('SqliteRepository: detected by the background checkpointer, without writes', () => {
  it('an idle repository whose file is deleted refuses its next read within a few checkpoint rounds', async () => {
    const dir = tempDir();
    const repository = new SqliteRepository({ database: dir.file() });
    try {
      // 100 commits start the checkpoint thread.
      for (let i = 0; i < 120; i++) await repository.insert(task(`t-${i}`));
      await vi.waitFor(() => expect(existsSync(dir.file())).toBe(true));
      rmSync(dir.file());
      await vi.waitFor(() => expect(repository.countByState()).rejects.toBeInstanceOf(DatabaseFileReplacedError), { timeout: 5_000, interval: 20 });
    } finally {
      await repository.close().catch(() => undefined);
      dir.remove();
    }
  });
});

describe('Checkpointer: the worker never checkpoints into a file that took the path', () => {
  it('a worker started after another file was renamed over the database reports it and leaves that file untouched', async () => {
    const dir = tempDir();
    const db = new Database(dir.file());
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('wal_autocheckpoint = 0');
      db.exec('CREATE TABLE t (x TEXT NOT NULL)');
      const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
      db.transaction(() => {
        for (let i = 0; i < 200; i++) insert.run('mine'.repeat(100));
      })();
      const identities = { database: identityString(identityAt(dir.file())!), wal: identityString(identityAt(dir.file('horae.db-wal'))!) };
      const other = new Database(dir.file('other.db'));
      other.exec("CREATE TABLE t (x TEXT NOT NULL); INSERT INTO t (x) VALUES ('theirs')");
      other.close();
      renameSync(dir.file('other.db'), dir.file());
      const before = readFileSync(dir.file());
      let moved!: () => void;
      const reported = new Promise<void>((resolve) => (moved = resolve));
      const checkpointer = new Checkpointer(db, { path: dir.file(), synchronous: 'NORMAL', intervalMs: 5, identities, onFileMoved: () => moved() });
      await reported;
      await checkpointer.close();
      // Not one page of this connection's log reached the file now at the path.
      expect(readFileSync(dir.file()).equals(before)).toBe(true);
    } finally {
      db.close();
      dir.remove();
    }
  });
});
