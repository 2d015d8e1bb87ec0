/**
 * What a running node does when its SQLite file is deleted under it (issue 10, defect 4): the calls fail at once with
 * DatabaseFileReplacedError, none is retried as an outage, and the node still stops.
 */
import { rmSync } from 'node:fs';
import { DatabaseFileReplacedError, SqliteRepository } from '@horae/repo-sqlite';
import { WorkRegistry, createHorae } from '@horae/storage';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from './temp-database.js';

describe('a node whose SQLite file is deleted while it runs', () => {
  let dir: TempDir;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it('fails the run in progress and later schedule() calls with DatabaseFileReplacedError, retries none, and stops', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let runs = 0;
    const registry = new WorkRegistry().register('w', async () => {
      // The first run ends at once; the second waits until the file is gone.
      if (++runs === 1) return 'ok';
      started();
      await gate;
      return 'ok';
    });
    const repository = new SqliteRepository({ database: dir.file() });
    const horae = createHorae({ repository, registry, concurrency: 2 });
    const outages: unknown[] = [];
    horae.events.on('repository:error', (event) => outages.push(event));
    await horae.start();
    try {
      expect(await (await horae.schedule({ workId: 'w' })).result).toBe('ok');
      const handle = await horae.schedule({ workId: 'w' });
      await running;
      rmSync(dir.file());
      release();
      // Its end cannot be recorded: the run fails with the error instead of being retried forever.
      await expect(handle.result).rejects.toBeInstanceOf(DatabaseFileReplacedError);
      await expect(horae.schedule({ workId: 'w' })).rejects.toMatchObject({ code: 'DATABASE_FILE_REPLACED' });
      expect(outages).toEqual([]);
    } finally {
      await horae.stop();
      await repository.close().catch(() => undefined);
    }
  });
});
