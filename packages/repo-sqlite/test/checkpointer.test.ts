import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqliteRepository } from '@horae/repo-sqlite';
import { BACKSTOP_AUTOCHECKPOINT_PAGES, Checkpointer } from '../src/checkpointer.js';
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
      await vi.waitFor(() => expect(autocheckpoint(db)).toBe(BACKSTOP_AUTOCHECKPOINT_PAGES), { timeout: 5_000 });
      const before = statSync(dir.file()).size;
      // About 2 MB of pages, far under what makes an inline checkpoint (4,000 pages now): only the worker copies
      // them into the database file.
      const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
      db.transaction(() => {
        for (let i = 0; i < 2_000; i++) insert.run('x'.repeat(1_000));
      })();
      await vi.waitFor(() => expect(statSync(dir.file()).size).toBeGreaterThan(before + 1_000_000), { timeout: 5_000 });
    } finally {
      await checkpointer.close();
    }
    // Closing hands the checkpoints back to the connection at once.
    expect(autocheckpoint(db)).toBe(1000);
  });

  it('under sustained writes the WAL stays bounded: it wraps instead of growing with every transaction', async () => {
    const checkpointer = new Checkpointer(db, { path: dir.file(), synchronous: 'NORMAL', intervalMs: 5 });
    try {
      await vi.waitFor(() => expect(autocheckpoint(db)).toBe(BACKSTOP_AUTOCHECKPOINT_PAGES), { timeout: 5_000 });
      const pageSize = Number(db.pragma('page_size', { simple: true }));
      const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
      const row = 'x'.repeat(pageSize - 200);
      const write = db.transaction(() => {
        for (let i = 0; i < 10; i++) insert.run(row);
      });
      // 4x the backstop in pages, in small transactions that the worker keeps copying back as they come: without
      // the backstop the WAL never finds itself fully copied at the start of a write, never starts over, and holds
      // every frame written. With it, the WAL starts over from its beginning whenever it has been copied back, so it
      // holds only the frames since the last restart. (The file keeps its high-water mark, which on a loaded
      // machine depends on when the first restart came: the frames in use tell the two apart without timing.)
      const written = 4 * BACKSTOP_AUTOCHECKPOINT_PAGES;
      for (let i = 0; i < written / 10; i++) write();
      const [state] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
      expect(state!.log).toBeLessThan(0.75 * written);
    } finally {
      await checkpointer.close();
    }
  });

  it('a worker that cannot open the file hands the checkpoints back to the connection', async () => {
    db.pragma('wal_autocheckpoint = 0');
    const checkpointer = new Checkpointer(db, { path: dir.file('missing.db'), synchronous: 'NORMAL', intervalMs: 10 });
    try {
      await vi.waitFor(() => expect(autocheckpoint(db)).toBe(1000), { timeout: 5_000 });
    } finally {
      await checkpointer.close();
    }
  });

  it('a repository on a file keeps working past the start of its checkpointer, and closes cleanly', async () => {
    db.close();
    const repository = new SqliteRepository({ database: dir.file('repo.db'), groupCommit: false });
    for (let i = 0; i < 120; i++) await repository.insert({ id: `t-${i}`, workId: 'w', scheduledAt: new Date(0) });
    const claimed = await repository.claimDue({ owner: 'n', leaseMs: 60_000, limit: 120 });
    await Promise.all(claimed.map((task) => repository.markAsStarted(task.id, task.lease!.token)));
    await Promise.all(claimed.map((task) => repository.markAsDone(task.id, task.lease!.token)));
    expect((await repository.countByState()).Done).toBe(120);
    await repository.close();
    const reopened = new SqliteRepository({ database: dir.file('repo.db'), checkpoint: 'inline' });
    expect((await reopened.countByState()).Done).toBe(120);
    await reopened.close();
  });
});
