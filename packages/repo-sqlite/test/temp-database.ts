import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Repository } from '@horae/storage';
import type { RepositoryFixture } from '@horae/storage/testing';
import { SqliteRepository, type SqliteRepositoryOptions } from '@horae/repo-sqlite';

/** A fresh directory for one test's database files, and its removal. */
export interface TempDir {
  path: string;
  file(name?: string): string;
  remove(): void;
}

/** Makes a fresh temporary directory. */
export function tempDir(): TempDir {
  const path = mkdtempSync(join(tmpdir(), 'horae-sqlite-'));
  return { path, file: (name = 'horae.db') => join(path, name), remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A conformance fixture on a fresh database file: peers are separate better-sqlite3 connections to it.
 *
 * @param options - options for every repository it opens (the database path is set by the fixture)
 */
export function createFileFixture(options: Omit<SqliteRepositoryOptions, 'database'> = {}): Promise<RepositoryFixture & { path: string }> {
  const dir = tempDir();
  const path = dir.file();
  const opened: Repository[] = [];
  const open = (): SqliteRepository => {
    const repository = new SqliteRepository({ ...options, database: path });
    opened.push(repository);
    return repository;
  };
  const repository = open();
  return Promise.resolve({
    path,
    repository,
    openPeer: () => Promise.resolve(open()),
    dispose: async () => {
      for (const r of opened) await r.close();
      dir.remove();
    },
  });
}
