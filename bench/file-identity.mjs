// What checking the SQLite file's identity costs (issue 10, defect 4): one statSync of the database path and one
// of its -wal, as SqliteRepository does after each write transaction, against the transaction itself.
//
// Usage: npx tsc -b && node bench/file-identity.mjs [N=200000] [REPO=@horae/repo-sqlite] [TASKS=5000]
// Prints ONE JSON line. Files in a fresh temp directory, removed at the end. REPO is the module of SqliteRepository:
// give a copy of an older build (e.g. node_modules/.bench-baseline-repo-sqlite/dist/index.js, a copy of dist/ taken
// before the check existed) to measure the drain without the check, and alternate the two.
//   stat_us             one statSync(path) with bigint (dev, ino), the path present
//   stat_number_us      the same without bigint
//   check_us            the check as the repository runs it: two bigint stats (database and -wal) and the compare
//   tx_us               one write transaction of one UPDATE (BEGIN IMMEDIATE … COMMIT), synchronous NORMAL, WAL
//   check_share_of_tx   check_us / tx_us: the cost per transaction (group commit puts many writes in one)
//   drain_per_s         SqliteRepository (REPO): TASKS tasks, 50 concurrent loops of claimDue(1) + markAsStarted +
//                       markAsDone, group commit, background checkpoints: tasks per wall second
//   drain_per_cpu_s     the same per CPU second of this process (steadier on a shared machine)
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const N = Number(process.argv[2] ?? 200_000);
const dir = mkdtempSync(join(tmpdir(), 'horae-bench-identity-'));
const path = join(dir, 'horae.db');
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO t VALUES (1, 0)');

const perCall = (n, run) => {
  for (let i = 0; i < Math.min(n, 10_000); i++) run(i); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run(i);
  return Number(process.hrtime.bigint() - start) / 1000 / n;
};
const opened = { db: statSync(path, { bigint: true }), wal: statSync(`${path}-wal`, { bigint: true }) };
const same = (a, b) => a !== undefined && a.dev === b.dev && a.ino === b.ino;
let mismatches = 0;

const stat_us = perCall(N, () => statSync(path, { bigint: true, throwIfNoEntry: false }));
const stat_number_us = perCall(N, () => statSync(path, { throwIfNoEntry: false }));
const check_us = perCall(N, () => {
  if (!same(statSync(path, { bigint: true, throwIfNoEntry: false }), opened.db)) mismatches++;
  if (!same(statSync(`${path}-wal`, { bigint: true, throwIfNoEntry: false }), opened.wal)) mismatches++;
});
const begin = db.prepare('BEGIN IMMEDIATE');
const update = db.prepare('UPDATE t SET n = n + 1 WHERE id = 1');
const commit = db.prepare('COMMIT');
const txN = Math.max(1, Math.floor(N / 10));
const tx_us = perCall(txN, () => {
  begin.run();
  update.run();
  commit.run();
});
db.close();

const repoModule = process.argv[3] ?? '@horae/repo-sqlite';
const tasks = Number(process.argv[4] ?? 5_000);
const { SqliteRepository } = await import(repoModule.startsWith('.') || repoModule.startsWith('/') ? new URL(repoModule, `file://${process.cwd()}/`).href : repoModule);
const repository = new SqliteRepository({ database: join(dir, 'drain.db') });
for (let i = 0; i < tasks; i += 1_000) {
  await repository.insertMany(Array.from({ length: Math.min(1_000, tasks - i) }, (_, j) => ({ workId: 'w', scheduledAt: new Date(0), param: { i: i + j } })));
}
const cpuStart = process.cpuUsage();
const wallStart = process.hrtime.bigint();
let done = 0;
await Promise.all(
  Array.from({ length: 50 }, async () => {
    for (;;) {
      const [task] = await repository.claimDue({ owner: 'bench', leaseMs: 60_000, limit: 1 });
      if (task === undefined) return;
      await repository.markAsStarted(task.id, task.lease.token);
      await repository.markAsDone(task.id, task.lease.token);
      done++;
    }
  }),
);
const wallS = Number(process.hrtime.bigint() - wallStart) / 1e9;
const cpu = process.cpuUsage(cpuStart);
const cpuS = (cpu.user + cpu.system) / 1e6;
await repository.close();
rmSync(dir, { recursive: true, force: true });
const round = (x) => Math.round(x * 1000) / 1000;
console.log(
  JSON.stringify({
    bench: 'file-identity',
    n: N,
    stat_us: round(stat_us),
    stat_number_us: round(stat_number_us),
    check_us: round(check_us),
    tx_us: round(tx_us),
    check_share_of_tx: round(check_us / tx_us),
    mismatches,
    repo: repoModule,
    tasks: done,
    drain_per_s: Math.round(done / wallS),
    drain_per_cpu_s: Math.round(done / cpuS),
    node: process.version,
    load: (await import('node:os')).loadavg().map(round),
  }),
);
