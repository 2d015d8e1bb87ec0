import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackages } from '../multi-node/proof.js';
import { cleanups, tempDir, undoAfterEach } from '../multi-node/cleanups.js';
import { CHAOS_WORK, commonFigures, firstStartAfter, runScenario, startsDuring } from './scenario.js';
import { sqliteObserver } from '../multi-node/observers.js';

// Issue 10, chaos: three nodes drain 600 tasks on one SQLite file while another process (not Horae) holds a write
// transaction (BEGIN IMMEDIATE) on it for HOLD_MS, longer than the lease. The nodes' writes wait for the lock up to
// their busyTimeoutMs (1 s here, blocking their event loops as better-sqlite3 does), fail with SQLITE_BUSY and are
// tried again; their leases run out meanwhile. The five invariants are checked from the run logs, the rows and the
// history.

const HOLD_MS = 3000;
const BUSY_TIMEOUT_MS = 1000;
const SCENARIO = { tasks: 600, dueNow: 150, spreadMs: 6000, faultAfterEnded: 200, drainTimeoutMs: 60_000 } as const;

/** The blocking process: opens the file with better-sqlite3, takes the write lock, holds it, commits. */
const BLOCKER_SOURCE = String.raw`// Holds SQLite's write lock on a file for a while (test/chaos/sqlite-writer-blocked.test.ts).
const [driverUrl, dbPath, holdMs] = process.argv.slice(2);
const { default: Database } = await import(driverUrl);
const db = new Database(dbPath);
db.pragma('busy_timeout = 30000');
db.exec('BEGIN IMMEDIATE');
process.send({ type: 'locked' });
setTimeout(() => {
  db.exec('COMMIT');
  db.close();
  process.send({ type: 'released' }, () => process.exit(0));
}, Number(holdMs));
`;

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const driverUrl = pathToFileURL(createRequire(join(root, 'packages', 'repo-sqlite', 'package.json')).resolve('better-sqlite3')).href;

undoAfterEach();

beforeAll(() => buildPackages(), 120_000);

/** Forks the blocker; resolves with the real times it took and released the lock (its own messages, not a timer). */
async function holdWriteLock(dir: string, dbPath: string): Promise<{ locked: number; released: number }> {
  const script = join(dir, 'blocker.mjs');
  writeFileSync(script, BLOCKER_SOURCE);
  const child = fork(script, [driverUrl, dbPath, String(HOLD_MS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [], env: { ...process.env, NODE_OPTIONS: '' } });
  cleanups.push(() => void child.kill('SIGKILL'));
  const marks: Partial<Record<'locked' | 'released', number>> = {};
  await new Promise<void>((resolve, reject) => {
    child.on('message', (message: { type: 'locked' | 'released' }) => {
      marks[message.type] = Date.now();
      if (message.type === 'released') resolve();
    });
    child.once('exit', (code) => (marks.released === undefined ? reject(new Error(`the blocker exited (${code}) before releasing the lock`)) : resolve()));
  });
  return { locked: marks.locked!, released: marks.released! };
}

describe('a SQLite writer blocked by another process', () => {
  it(`three nodes, the write lock held ${HOLD_MS} ms by another process: no run starts meanwhile, the drain resumes at the release, the invariants hold`, async () => {
    const dir = tempDir('horae-chaos-lock-');
    const dbPath = join(dir, 'horae.db');
    const { observer, database } = sqliteObserver(dbPath);
    const result = await runScenario({
      ...SCENARIO,
      database,
      observer,
      dir,
      nodes: [{}, {}, {}].map(() => ({ config: { busyTimeoutMs: BUSY_TIMEOUT_MS } })),
      work: CHAOS_WORK,
      fault: async () => ({ marks: await holdWriteLock(dir, dbPath) }),
    });
    const { marks, lines } = result;
    const figures = {
      ...commonFigures(result),
      heldMs: marks.released! - marks.locked!,
      startsWhileLocked: startsDuring(result, marks.locked!, marks.released!),
      firstStartAfterReleaseMs: firstStartAfter(lines, marks.released!),
      drainAfterReleaseMs: marks.drained! - marks.released!,
      repositoryErrors: result.stats.reduce((sum, s) => sum + (s.repositoryErrors ?? 0), 0),
      leaseLost: result.stats.reduce((sum, s) => sum + (s.leaseLost ?? 0), 0),
    };
    console.info(`[chaos sqlite writer blocked] ${JSON.stringify(figures)}`);

    expect(result.workerErrors).toEqual([]);
    expect(result.report.violations.slice(0, 20)).toEqual([]);
    // The lock held: the nodes' writes failed with SQLITE_BUSY past their busy timeout, and no run started meanwhile.
    expect(figures.repositoryErrors).toBeGreaterThan(0);
    expect(figures.startsWhileLocked.unrecorded).toBe(0);
    expect(figures.firstStartAfterReleaseMs).toBeDefined();
  }, 120_000);
});
