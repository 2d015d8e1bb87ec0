import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteRepository } from '@horae/repo-sqlite';
import { buildPackagesForChildren, builtPackageUrl } from '../../../test/support/built-packages.js';
import { tempDir, type TempDir } from './temp-database.js';

const distEntry = builtPackageUrl('repo-sqlite');

/**
 * The child: a plain .mjs written to the test's temp directory (so no untyped file sits in the linted tree),
 * importing the built adapter by URL. It races the other children to claim the tasks, with claimDue and
 * with claims of single ids issued in one tick (so they share a group-commit transaction), then reports
 * what it won.
 */
const WORKER_SOURCE = `// A child process of multi-process.test.ts: opens the shared file with the built adapter and races the other
// children to claim its tasks, with claimDue and with claims of single ids, then reports what it won.
const { SqliteRepository } = await import(process.argv[4]);

const [path, owner] = process.argv.slice(2);
const repository = new SqliteRepository({ database: path });

process.on('message', async (message) => {
  if (message.type !== 'go') return;
  const { ids } = message;
  const won = [];
  const ahead = [];
  try {
    let round = 0;
    for (;;) {
      round++;
      // Several writes in one tick: they share one transaction (group commit) and race other processes.
      const picks = Array.from({ length: 4 }, (_, i) => ids[(round * 7 + i * 53 + owner.length * 31) % ids.length]);
      const [batch, ...singles] = await Promise.all([
        repository.claimDue({ owner, leaseMs: 600_000, limit: 3 }),
        ...picks.map((id) => repository.claim(id, { owner, leaseMs: 600_000 })),
      ]);
      for (const task of batch) {
        won.push(task.id);
        ahead.push(task.id);
      }
      for (const task of singles) if (task !== null) won.push(task.id);
      if ((await repository.countByState()).Initialized === 0) break;
    }
    await repository.close();
    process.send({ type: 'done', won, ahead }, () => process.exit(0));
  } catch (error) {
    process.send({ type: 'error', message: String(error?.stack ?? error) }, () => process.exit(1));
  }
});
process.send({ type: 'ready' });
`;

/** How many tasks the children race for. */
const TASKS = 1000;

/** `won`: every task a child claimed; `ahead`: those of them it claimed with claimDue (ahead, unstarted). */
type WorkerMessage = { type: 'ready' } | { type: 'done'; won: string[]; ahead: string[] } | { type: 'error'; message: string };

function nextMessage(child: ChildProcess): Promise<WorkerMessage> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`worker exited with ${String(code)} before answering`));
    child.once('exit', onExit);
    child.once('message', (message) => {
      child.off('exit', onExit);
      resolve(message as WorkerMessage);
    });
  });
}

let dir: TempDir;
beforeAll(() => {
  buildPackagesForChildren(['repo-sqlite']);
  dir = tempDir();
}, 120_000);
afterAll(() => dir?.remove());

describe('several processes on one file', () => {
  it('4 processes racing claimDue and claim over 1000 tasks claim every task exactly once', async () => {
    const path = dir.file();
    const setup = new SqliteRepository({ database: path });
    // Enough tasks that the race lasts well beyond one scheduling slice of a loaded machine: with a few
    // hundred, one child could claim them all before the others got the CPU, and the race was not real.
    const inserted = await setup.insertMany(Array.from({ length: TASKS }, (_, i) => ({ workId: 'w', scheduledAt: new Date(Date.now() - 60_000), param: i })));
    const ids = inserted.map((r) => r.task.id);
    await setup.close();

    const worker = join(dir.path, 'claim-worker.mjs');
    writeFileSync(worker, WORKER_SOURCE);
    const children = Array.from({ length: 4 }, (_, i) => fork(worker, [path, `process-${i}`, distEntry], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // A plain Node: not vitest's flags, whose "source" condition would resolve packages to TypeScript.
        execArgv: [],
        env: { ...process.env, NODE_OPTIONS: '' },
      }));
    try {
      const ready = await Promise.all(children.map(nextMessage));
      expect(ready.every((m) => m.type === 'ready')).toBe(true);
      const answers = children.map(nextMessage);
      for (const child of children) child.send({ type: 'go', ids });
      const results = await Promise.all(answers);
      for (const result of results) if (result.type === 'error') throw new Error(result.message);
      const wonBy = results.map((r) => (r.type === 'done' ? r.won : []));

      const all = wonBy.flat();
      expect(all.length).toBe(TASKS);
      expect(new Set(all).size).toBe(TASKS);
      expect(new Set(all)).toEqual(new Set(ids));
      // More than one process won tasks: the race was real.
      expect(wonBy.filter((won) => won.length > 0).length).toBeGreaterThan(1);

      // A claim by id starts its run (an attempt); a claim ahead does not. Every task was claimed once.
      const aheadIds = new Set(results.flatMap((r) => (r.type === 'done' ? r.ahead : [])));
      expect(aheadIds.size, 'claims ahead and claims by id both won tasks').toBeGreaterThan(0);
      expect(aheadIds.size).toBeLessThan(TASKS);
      const check = new SqliteRepository({ database: path });
      for (const [i, won] of wonBy.entries()) {
        for (const id of won.slice(0, 20)) {
          const task = await check.getById(id);
          const started = !aheadIds.has(id);
          expect(task).toMatchObject({ state: 'Working', claims: 1, attempt: started ? 1 : 0, lease: { owner: `process-${i}`, started } });
        }
      }
      expect(await check.countByState()).toMatchObject({ Initialized: 0, Working: TASKS });
      await check.close();
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill();
    }
  }, 60_000);
});
