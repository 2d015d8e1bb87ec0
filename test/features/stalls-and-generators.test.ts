import { StalledError } from '@horae/core';
import { WorkRegistry, type Horae } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanups, eventWhere, startNode, tempDatabase, withTimeout } from './helpers.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('feature: a work’s own stall timeout (SQLite)', () => {
  it('comes from the registered work, so it applies on the node that restored the task after a restart', async () => {
    const db = tempDatabase(cleanups);
    const aborts: unknown[] = [];
    const registry = (): WorkRegistry =>
      new WorkRegistry().register(
        'crawl',
        async (ctx) => {
          ctx.progress({ completed: 1, total: 2 });
          if (ctx.attempt === 1) {
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
            aborts.push(ctx.signal.reason);
            return 'ignored';
          }
          ctx.progress({ completed: 2, total: 2 });
          return 'crawled';
        },
        { stallTimeoutMs: 300, maxAttempts: 2, retry: () => 50 },
      );
    // Node A stores the task and goes away before it is due: no stall option anywhere but the work's.
    const a = await startNode(db, registry(), cleanups, { nodeId: 'a' });
    const handle = await a.schedule({ workId: 'crawl', delayMs: 300 });
    await a.stop({ timeoutMs: 100, hookGraceMs: 0 });
    const b = await startNode(db, registry(), cleanups, { nodeId: 'b', progressThrottleMs: 0 });
    const done = eventWhere([b.events], 'task:succeeded', (e) => e.task.id === handle.taskId, 8000);
    const { error } = await eventWhere([b.events], 'task:retried', (e) => e.task.id === handle.taskId, 8000);
    expect(error).toBeInstanceOf(StalledError);
    await done;
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toBeInstanceOf(StalledError);
    const attempts = await b.listAttempts(handle.taskId);
    expect(attempts.map((x) => [x.node, x.outcome])).toEqual([
      ['b', 'retried'],
      ['b', 'succeeded'],
    ]);
    expect(attempts[0]!.error).toMatchObject({ code: 'STALLED' });
    // In the file, read on a connection of its own.
    expect(await db.open().getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2, progress: { completed: 2, total: 2 } });
  }, 20_000);
});

describe('feature: generators with storage (SQLite)', () => {
  it('produced tasks are durable, pulled only into free slots, and a restart mid-way loses none of them', async () => {
    const db = tempDatabase(cleanups);
    const TOTAL = 24;
    const CONCURRENCY = 2;
    const finished = new Map<number, number>(); // item → runs that completed
    const registry = (): WorkRegistry =>
      new WorkRegistry().register('job', async (ctx) => {
        const { i } = ctx.param as { i: number };
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, 25);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(ctx.signal.reason as Error);
          });
        });
        finished.set(i, (finished.get(i) ?? 0) + 1);
      });
    let next = 0; // the producer's own cursor: the generator is not persisted, the producer restarts it from here
    const produced: string[] = [];
    let mostPending = 0;
    // A generator of TOTAL items; it checks, at each pull, how many pulled items have not finished yet.
    function* items(horae: () => Horae | undefined): Generator<{ workId: string; param: { i: number }; taskId: string }> {
      while (next < TOTAL) {
        const done = [...finished.values()].filter((n) => n > 0).length;
        mostPending = Math.max(mostPending, produced.length - done);
        if (horae() === undefined) return;
        const i = next++;
        const taskId = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
        produced.push(taskId);
        yield { workId: 'job', param: { i }, taskId };
      }
    }

    const stored = new Set<string>(); // inserted in the file: the insert landed
    let current: Horae | undefined = await startNode(db, registry(), cleanups, { concurrency: CONCURRENCY });
    const first = current;
    first.events.on('task:scheduled', ({ task, source }) => void (source === 'inserted' && stored.add(task.id)));
    first.scheduler.addGenerator(items(() => current), { name: 'jobs' });
    await withTimeout(
      new Promise<void>((resolve) => {
        const off = first.events.on('task:succeeded', () => {
          if (finished.size >= 8) {
            off();
            resolve();
          }
        });
      }),
      10_000,
      'eight jobs to finish',
    );
    // Durable: every produced task is a row of the file, read on a connection of its own.
    const reader = db.open();
    const rows = await Promise.all([...stored].map((id) => reader.getById(id)));
    expect(rows.length).toBeGreaterThanOrEqual(8);
    expect(rows.every((r) => r.workId === 'job')).toBe(true);
    // The restart: the node stops mid-way (runs cut by the stop go back to Initialized), then comes back.
    current = undefined;
    await first.stop({ timeoutMs: 0, hookGraceMs: 0 });
    const producedBeforeRestart = [...produced];
    // Every item pulled before the stop was written (an insert in flight at the stop lands all the same).
    expect((await Promise.all(producedBeforeRestart.map((id) => reader.getById(id)))).every((r) => r.workId === 'job')).toBe(true);
    expect(producedBeforeRestart.length).toBeLessThan(TOTAL);
    const second = await startNode(db, registry(), cleanups, { concurrency: CONCURRENCY });
    current = second;
    second.scheduler.addGenerator(items(() => current), { name: 'jobs' });
    await withTimeout(
      (async () => {
        for (;;) {
          const counts = await reader.countByState();
          if (counts.Done === TOTAL) return;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })(),
      15_000,
      'all jobs Done',
    );
    expect(produced).toHaveLength(TOTAL);
    expect(new Set(produced).size).toBe(TOTAL);
    // None lost, none run twice to completion.
    expect([...finished.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: TOTAL }, (_, i) => i));
    expect([...finished.values()].every((n) => n === 1)).toBe(true);
    expect(mostPending).toBeLessThanOrEqual(CONCURRENCY + 1);
    for (const id of producedBeforeRestart) expect((await reader.getById(id)).state).toBe('Done');
  }, 30_000);
});
