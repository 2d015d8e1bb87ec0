import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqliteRepository } from '@horae/repo-sqlite';
import { Checkpointer } from '../src/checkpointer.js';
import { tempDir, type TempDir } from './temp-database.js';

const autocheckpoint = (db: Database.Database): unknown => db.pragma('wal_autocheckpoint', { simple: true });

describe('background WAL checkpoints', () => {
  let dir: TempDir;
  let db: Database.Database;
  beforeEach(() => {
    dir = tempDir();
    db = new Database(dir.file());
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (x TEXT NOT NULL)');
  });
  afterEach(() => {
    if (db.open) db.close();
    dir.remove();
  });

  it('the worker takes over the checkpoints: the connection stops checkpointing inline, and the file still receives the WAL', async () => {
    const checkpointer = new Checkpointer(db, { path: dir.file(), synchronous: 'NORMAL', intervalMs: 10 });
    try {
      await vi.waitFor(() => expect(autocheckpoint(db)).toBe(0), { timeout: 5_000 });
      const before = statSync(dir.file()).size;
      // About 2 MB of pages, far under what makes an inline checkpoint (which is off now anyway): only the worker
      // copies them into the database file.
      const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
      db.transaction(() => {
        for (let i = 0; i < 2_000; i++) insert.run('x'.repeat(1_000));
      })();
      await vi.waitFor(() => expect(statSync(dir.file()).size).toBeGreaterThan(before + 1_000_000), { timeout: 5_000 });
    } finally {
      checkpointer.close();
    }
    // Closing hands the checkpoints back to the connection at once.
    expect(autocheckpoint(db)).toBe(1000);
  });

  it('a worker that cannot open the file hands the checkpoints back to the connection', async () => {
    db.pragma('wal_autocheckpoint = 0');
    const checkpointer = new Checkpointer(db, { path: dir.file('missing.db'), synchronous: 'NORMAL', intervalMs: 10 });
    try {
      await vi.waitFor(() => expect(autocheckpoint(db)).toBe(1000), { timeout: 5_000 });
    } finally {
      checkpointer.close();
    }
  });

  it('a repository on a file keeps working past the start of its checkpointer, and closes cleanly', async () => {
    db.close();
    const repository = new SqliteRepository({ database: dir.file('repo.db'), groupCommit: false });
    for (let i = 0; i < 120; i++) await repository.insert({ id: `t-${i}`, workId: 'w', scheduledAt: new Date(0) });
    const claimed = await repository.claimDue({ owner: 'n', leaseMs: 60_000, limit: 120 });
    await Promise.all(claimed.map((task) => repository.markAsDone(task.id, task.lease!.token)));
    expect((await repository.countByState()).Done).toBe(120);
    await repository.close();
    const reopened = new SqliteRepository({ database: dir.file('repo.db'), checkpoint: 'inline' });
    expect((await reopened.countByState()).Done).toBe(120);
    await reopened.close();
  });
});
