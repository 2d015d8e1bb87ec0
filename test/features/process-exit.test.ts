import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackagesForChildren, builtPackageUrl } from '../support/built-packages.js';

const run = promisify(execFile);

beforeAll(() => buildPackagesForChildren(['repo-sqlite']), 120_000);

describe('a process that closes its SQLite repository ends on its own', () => {
  it('after the background checkpointer started, close() resolves and the process exits with code 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'horae-exit-'));
    try {
      // Enough committed transactions that the repository starts its checkpoint thread, then a close awaited at
      // the top level: had close() waited on a thread that does not keep the process alive, Node would end the
      // process with code 13 (an unsettled top-level await) and never print "closed".
      const source = `
        const { SqliteRepository } = await import(${JSON.stringify(builtPackageUrl('repo-sqlite'))});
        const repository = new SqliteRepository({ database: ${JSON.stringify(join(dir, 'exit.db'))}, groupCommit: false });
        for (let i = 0; i < 300; i++) await repository.insert({ workId: 'w', scheduledAt: new Date(0) });
        await repository.close();
        console.log('closed');
      `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', source], { timeout: 60_000 });
      expect(stdout.trim()).toBe('closed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
