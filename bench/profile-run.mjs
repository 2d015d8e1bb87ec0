// The per-run path, profiled: one createHorae() node (multi-node mode, attempt history as the adapter writes it)
// drains N due no-op tasks at concurrency C, and the drain alone (from horae.start() to the last task:succeeded; the
// insert of the backlog is left out) is profiled through node:inspector. Prints ONE JSON line: the drain's figures,
// and the top functions and files by self time in µs a run (the main thread's samples; `(idle)` left out).
//
// Usage: npx tsc -b && node bench/profile-run.mjs [sqlite|postgres] [N=20000] [C=16] [cpu|heap] [OUT]
//   cpu   (default) CPU profile, sampled every 200 µs: self time by function and by file
//   heap  sampling heap profile (every 1 KB, objects collected by GCs included): bytes allocated a run by function
//   OUT   also writes the raw profile there (.cpuprofile opens in Chrome DevTools)
// HORAE_BENCH_ROOT=<dir> profiles the packages/*/dist under another checkout or a copy of one (an A/B in one period).
// Why not `node --cpu-prof`: it covers the whole process, the insert of the backlog and the start-up included.
//
// Reading a CPU profile: `cpu_us_per_run` (process.cpuUsage) counts every thread (GC helpers, SQLite's checkpointer
// worker); the profile samples the main thread only. A native function's samples are wall time while the thread is
// in it: `writev` on PostgreSQL is mostly time spent in the socket write while the 2-core machine runs the server,
// not CPU (compare `sys_us_per_run`).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = process.env.HORAE_BENCH_ROOT ?? new URL('..', import.meta.url).pathname;
const [adapter = 'sqlite', nArg = '20000', cArg = '16', kind = 'cpu', out] = process.argv.slice(2);
const n = Number(nArg);
const concurrency = Number(cArg);
const TOP = 20;
const pkg = (name) => import(pathToFileURL(join(root, 'packages', name, 'dist', 'index.js')).href);
const PG_URL = process.env.HORAE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const { WorkRegistry, createHorae } = await pkg('storage');
let repository;
let cleanup;
if (adapter === 'sqlite') {
  const { SqliteRepository } = await pkg('repo-sqlite');
  const dir = mkdtempSync(join(tmpdir(), 'horae-profile-'));
  repository = new SqliteRepository({ database: join(dir, 'profile.db') });
  cleanup = async () => {
    await repository.close();
    rmSync(dir, { recursive: true, force: true });
  };
} else if (adapter === 'postgres') {
  const { PostgresRepository } = await pkg('repo-postgres');
  const schema = `horae_profile_${randomBytes(4).toString('hex')}`;
  repository = new PostgresRepository({ connectionString: PG_URL, schema });
  await repository.init();
  cleanup = async () => {
    await repository.close();
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  };
} else {
  throw new Error(`unknown adapter ${adapter}: sqlite or postgres`);
}

const now = new Date();
for (let i = 0; i < n; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) batch.push({ id: `t-${j}`, workId: 'noop', param: { j }, scheduledAt: now });
  await repository.insertMany(batch);
}
const registry = new WorkRegistry().register('noop', () => undefined);
const horae = createHorae({ repository, registry, concurrency, nodeId: 'profile-node', leaseMs: 30_000 });
let succeeded = 0;
let allDone;
const drained = new Promise((resolve) => (allDone = resolve));
horae.events.on('task:succeeded', () => {
  if (++succeeded >= n) allDone();
});

const session = new Session();
session.connect();
if (kind === 'heap') {
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
} else {
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
}
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await horae.start();
await drained;
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const { profile } = kind === 'heap' ? await session.post('HeapProfiler.stopSampling') : await session.post('Profiler.stop');
session.disconnect();
await horae.stop({ timeoutMs: 0, hookGraceMs: 0 });
await cleanup();
if (out !== undefined) writeFileSync(out, JSON.stringify(profile));

/** `function file:line` of a call frame, paths from packages/ or node_modules/ on. */
function frameName(callFrame) {
  const file = callFrame.url.replace(/^file:\/\//, '').replace(/.*\/(packages|node_modules)\//, '$1/') || '(native)';
  return { fn: `${callFrame.functionName || '(anon)'} ${file}:${callFrame.lineNumber + 1}`, file: file.startsWith('node_modules/') ? file.split('/').slice(0, 2).join('/') : file };
}
const top = (map, digits) =>
  Object.fromEntries(
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([k, v]) => [k, Math.round((v / n) * 10 ** digits) / 10 ** digits]),
  );

const result = {
  adapter,
  n,
  concurrency,
  drain_per_s: Math.round(n / (ms / 1000)),
  cpu_us_per_run: Math.round(((cpu.user + cpu.system) / n) * 10) / 10,
  sys_us_per_run: Math.round((cpu.system / n) * 10) / 10,
};
if (kind === 'heap') {
  const byFunction = new Map();
  let total = 0;
  const walk = (node) => {
    const { fn } = frameName(node.callFrame);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + node.selfSize);
    total += node.selfSize;
    for (const child of node.children) walk(child);
  };
  walk(profile.head);
  Object.assign(result, { allocated_bytes_per_run: Math.round(total / n), top_functions_bytes_per_run: top(byFunction, 0) });
} else {
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map();
  const byFile = new Map();
  let sampled = 0;
  for (const [id, us] of self) {
    const { callFrame } = nodes.get(id);
    if (callFrame.functionName === '(idle)') continue;
    sampled += us;
    const { fn, file } = frameName(callFrame);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  Object.assign(result, { sampled_us_per_run: Math.round((sampled / n) * 10) / 10, top_functions_us_per_run: top(byFunction, 2), top_files_us_per_run: top(byFile, 2) });
}
console.log(JSON.stringify(result));
