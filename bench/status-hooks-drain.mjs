// What status hooks cost a drain when the receiver is dead (issue 10, defect 3): N tasks scheduled and run to Done
// through createHorae, once without hooks, once with the in-memory StatusHookSender (the path before the outbox,
// still used for a `{ onTransition }` target or a repository without an outbox), once with the durable outbox.
// The receiver is dead: 127.0.0.1:9, where nothing listens, so every POST is refused at once and retried. A fourth
// pair of modes, memory-sender-live and outbox-live, sends to a live receiver (a child process answering 204): the
// cost of delivering every change while the drain runs, in memory and through the outbox. MODES=a,b,… picks modes.
//
// Usage: npx tsc -b && node bench/status-hooks-drain.mjs [sqlite|memory] [N=5000] [ROUNDS=3] [C=10]
// Prints ONE JSON line. The modes run interleaved, ROUNDS times each, each on a fresh database; the figures are the
// medians per mode, and the ratios are to the no-hook drain of the same run (the machine is shared: compare ratios).
// wall_ms and cpu_ms (user + system of this process) run from the first schedule() to the last task Done.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteRepository } from '../packages/repo-sqlite/dist/index.js';
import { MemoryRepository, WorkRegistry, createHorae, generateStatusHookSecret, statusHooks } from '../packages/storage/dist/index.js';

const adapter = process.argv[2] ?? 'sqlite';
const n = Number(process.argv[3] ?? 5000);
const rounds = Number(process.argv[4] ?? 3);
const concurrency = Number(process.argv[5] ?? 10);
const DEAD_URL = 'http://127.0.0.1:9/hooks';
// The live receiver runs in its own process, so that its work is not counted in this one's CPU.
const child = spawn(
  process.execPath,
  ['-e', "const s=require('node:http').createServer((q,r)=>{q.resume();q.on('end',()=>r.writeHead(204).end())});s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const [portLine] = await once(child.stdout, 'data');
const LIVE_URL = `http://127.0.0.1:${String(portLine).trim()}/hooks`;
const secret = generateStatusHookSecret();
const dir = mkdtempSync(join(tmpdir(), 'horae-hooks-bench-'));
let fileNo = 0;

function openRepository() {
  if (adapter === 'memory') return new MemoryRepository();
  return new SqliteRepository({ database: join(dir, `bench-${fileNo++}.db`) });
}

async function drain(mode) {
  const repository = openRepository();
  const registry = new WorkRegistry().register('w', () => undefined);
  const url = mode.endsWith('-live') ? LIVE_URL : DEAD_URL;
  const memoryHooks = mode.startsWith('memory-sender') ? statusHooks({ url, secret, maxQueue: 100_000 }) : undefined;
  const hooks = mode === 'none' ? undefined : memoryHooks ?? { url, secret };
  const horae = createHorae({ repository, registry, concurrency, ...(hooks === undefined ? {} : { statusHooks: hooks }) });
  let retries = 0;
  memoryHooks?.sender.events.on('hook:retrying', () => retries++);
  horae.durableHooks?.events.on('hook:retrying', () => retries++);
  await horae.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const handles = [];
  for (let i = 0; i < n; i += 500) {
    handles.push(...(await Promise.all(Array.from({ length: Math.min(500, n - i) }, () => horae.schedule({ workId: 'w' })))));
  }
  await Promise.all(handles.map((h) => h.result));
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  let outboxRows;
  if (horae.durableHooks !== undefined) {
    await horae.durableHooks.flush();
    outboxRows = (await repository.hookOutbox().listHookDeliveries({ limit: 1000 })).length;
  }
  await horae.stop({ hookGraceMs: 0, timeoutMs: 0 });
  await memoryHooks?.sender.close({ graceMs: 0 });
  await repository.close?.();
  return { wall_ms: wall, cpu_ms: (cpu.user + cpu.system) / 1000, retries_during_drain: retries, outbox_rows_seen: outboxRows };
}

const modes = (process.env.MODES ?? 'none,memory-sender,outbox,memory-sender-live,outbox-live').split(',');
const results = Object.fromEntries(modes.map((m) => [m, []]));
await drain('none'); // warm-up, not counted
for (let r = 0; r < rounds; r++) for (const mode of modes) results[mode].push(await drain(mode));
rmSync(dir, { recursive: true, force: true });
child.kill();

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const summary = {};
for (const mode of modes) {
  summary[mode] = {
    wall_ms: Math.round(median(results[mode].map((x) => x.wall_ms))),
    cpu_ms: Math.round(median(results[mode].map((x) => x.cpu_ms))),
    retries_during_drain: median(results[mode].map((x) => x.retries_during_drain)),
  };
}
for (const mode of modes.slice(1)) {
  summary[mode].wall_ratio_to_none = Math.round((summary[mode].wall_ms / summary.none.wall_ms) * 100) / 100;
  summary[mode].cpu_ratio_to_none = Math.round((summary[mode].cpu_ms / summary.none.cpu_ms) * 100) / 100;
}
console.log(JSON.stringify({ bench: 'status-hooks-drain', adapter, n, rounds, concurrency, receiver: 'dead (connection refused); outbox-live: a receiver answering 204', ...summary }));
