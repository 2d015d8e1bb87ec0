import { Scheduler } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { SqliteRepository } from '@horae/repo-sqlite';
import { WorkRegistry, isWorkLimiter, multiNodeStorage, type StorageMiddleware, type TaskLimitedEvent } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from './temp-database.js';

const RUN_MS = 3_000;

let dir: TempDir | undefined;
afterEach(() => {
  dir?.remove();
  dir = undefined;
});

describe('work concurrency across nodes on SQLite', () => {
  it('two nodes on two connections to one file, concurrency 2: never more than 2 Working, all 10 end Done on attempt 1', async () => {
    dir = tempDir();
    const clock = new VirtualClock({ flushTurns: 20 });
    const repoA = new SqliteRepository({ database: dir.file(), clock });
    const repoB = new SqliteRepository({ database: dir.file(), clock });
    expect(isWorkLimiter(repoA)).toBe(true);
    let running = 0;
    let most = 0;
    const workingSeen: number[] = [];
    const registry = new WorkRegistry().register(
      'encode',
      async () => {
        running++;
        most = Math.max(most, running);
        workingSeen.push((await repoA.list({ state: 'Working', workId: 'encode', limit: 100 })).tasks.length);
        await new Promise<void>((resolve) => clock.setTimer(resolve, RUN_MS));
        running--;
      },
      { concurrency: 2 },
    );
    const limited: TaskLimitedEvent[] = [];
    const nodes: Array<{ scheduler: Scheduler; storage: StorageMiddleware }> = [];
    for (const [nodeId, repo] of [['node-a', repoA], ['node-b', repoB]] as const) {
      const scheduler = new Scheduler({ clock, concurrency: 10, wallClockCheckMs: 3_600_000, stopGraceMs: 1000 });
      const storage = multiNodeStorage(repo, registry, { nodeId, leaseMs: 8_000, syncIntervalMs: 500 });
      storage.events.on('task:limited', (event) => limited.push(event));
      scheduler.use(storage.middleware);
      await storage.start(scheduler);
      scheduler.start();
      nodes.push({ scheduler, storage });
    }
    for (let i = 0; i < 10; i++) await nodes[i % 2]!.scheduler.schedule({ workId: 'encode', param: { i }, delayMs: 2_000 });
    for (let step = 0; step < 200 && (await repoA.countByState()).Done < 10; step++) await clock.advance(250);

    const tasks = (await repoA.list({ limit: 100 })).tasks;
    expect(tasks.map((task) => [task.state, task.attempt])).toEqual(Array.from({ length: 10 }, () => ['Done', 1]));
    expect(most).toBe(2);
    expect(workingSeen).toHaveLength(10);
    expect(Math.max(...workingSeen)).toBeLessThanOrEqual(2);
    expect(limited.length).toBeGreaterThan(0);
    for (const { scheduler } of nodes) await scheduler.stop();
    for (const { storage } of nodes) await storage.stop();
    await repoA.close();
    await repoB.close();
  });
});
