import { Scheduler, type WorkContext } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, WorkRegistry, isWorkLimiter, multiNodeStorage, type Repository, type StorageMiddleware, type TaskLimitedEvent } from '@horae/storage';
import { describe, expect, it } from 'vitest';

const LEASE = 8_000;
const RUN_MS = 3_000;

/** A client of `repo` that hides the WorkLimiter capability, as a MongoRepository lacks it. */
function withoutWorkLimits(repo: MemoryRepository): Repository {
  return new Proxy(repo, {
    get(target, property) {
      if (property === 'claimWithinLimit' || property === 'claimDueWithinLimits') return undefined;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Counts the runs of one work in progress across every node, and the most seen at once. */
class RunGauge {
  running = 0;
  most = 0;
  readonly workingSeen: number[] = [];

  constructor(readonly repo: Repository) {}

  work(clock: VirtualClock): (ctx: WorkContext) => Promise<void> {
    return async () => {
      this.running++;
      this.most = Math.max(this.most, this.running);
      // What the database holds at this moment: the Working rows of the work, across nodes.
      this.workingSeen.push((await this.repo.list({ state: 'Working', workId: 'encode', limit: 100 })).tasks.length);
      await new Promise<void>((resolve) => clock.setTimer(resolve, RUN_MS));
      this.running--;
    };
  }
}

interface Node {
  scheduler: Scheduler;
  storage: StorageMiddleware;
  limited: TaskLimitedEvent[];
}

async function startNode(repo: Repository, registry: WorkRegistry, clock: VirtualClock, nodeId: string, events: string[] = []): Promise<Node> {
  const scheduler = new Scheduler({ clock, concurrency: 10, wallClockCheckMs: 3_600_000, stopGraceMs: 1000 });
  const storage = multiNodeStorage(repo, registry, { nodeId, leaseMs: LEASE, syncIntervalMs: 500 });
  const limited: TaskLimitedEvent[] = [];
  storage.events.on('task:limited', (event) => limited.push(event));
  storage.events.on('work-limit:node-local', (event) => events.push(`node-local:${event.workIds.join(',')}`));
  scheduler.use(storage.middleware);
  await storage.start(scheduler);
  scheduler.start();
  return { scheduler, storage, limited };
}

async function runUntilDone(clock: VirtualClock, repo: Repository, total: number): Promise<void> {
  for (let step = 0; step < 200 && (await repo.countByState()).Done < total; step++) await clock.advance(250);
}

describe('work concurrency across nodes (WorkLimiter)', () => {
  it('two nodes, 10 tasks due on both, concurrency 2: never more than 2 run at once, all end Done on their first attempt', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const gauge = new RunGauge(repo);
    const registry = new WorkRegistry().register('encode', gauge.work(clock), { concurrency: 2 });
    const a = await startNode(repo, registry, clock, 'node-a');
    const b = await startNode(repo.openPeer(), registry, clock, 'node-b');
    // The work's concurrency also bounds each node's local slots.
    expect(a.scheduler.workConcurrency('encode')).toBe(2);
    for (let i = 0; i < 10; i++) await (i % 2 === 0 ? a : b).scheduler.schedule({ workId: 'encode', param: { i }, delayMs: 2_000 });
    await clock.advance(1_000); // both nodes' sync passes hold all ten
    expect(a.scheduler.get((await repo.list({ limit: 1 })).tasks[0]!.id)).toBeDefined();
    await runUntilDone(clock, repo, 10);

    const tasks = (await repo.list({ limit: 100 })).tasks;
    expect(tasks.map((task) => task.state)).toEqual(Array<string>(10).fill('Done'));
    // Refused claims spent no attempt: each task ran once, as attempt 1, with one history record.
    expect(tasks.map((task) => task.attempt)).toEqual(Array<number>(10).fill(1));
    for (const task of tasks) expect(await repo.listAttempts(task.id)).toHaveLength(1);
    expect(gauge.most).toBe(2);
    expect(Math.max(...gauge.workingSeen)).toBeLessThanOrEqual(2);
    expect(gauge.workingSeen).toHaveLength(10);
    // Both nodes hit the limit of the other's runs and waited instead of giving up.
    expect(a.limited.length + b.limited.length).toBeGreaterThan(0);
    for (const event of [...a.limited, ...b.limited]) expect(event).toMatchObject({ workId: 'encode', maxWorking: 2 });
    await Promise.all([a.scheduler.stop(), b.scheduler.stop()]);
    await Promise.all([a.storage.stop(), b.storage.stop()]);
  });

  it('a waiting task retries after a short backoff, not at the next sync, and other works run meanwhile', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const started: Array<[string, number]> = [];
    const registry = new WorkRegistry()
      .register(
        'encode',
        async (ctx) => {
          started.push([String((ctx.param as { name: string }).name), clock.now()]);
          await new Promise<void>((resolve) => clock.setTimer(resolve, RUN_MS));
        },
        { concurrency: 1 },
      )
      .register('mail', (ctx) => void started.push([String((ctx.param as { name: string }).name), clock.now()]));
    const a = await startNode(repo, registry, clock, 'node-a');
    const b = await startNode(repo.openPeer(), registry, clock, 'node-b');
    await a.scheduler.schedule({ workId: 'encode', param: { name: 'first' }, delayMs: 1_000 });
    await b.scheduler.schedule({ workId: 'encode', param: { name: 'second' }, delayMs: 1_000 });
    await b.scheduler.schedule({ workId: 'mail', param: { name: 'mail' }, delayMs: 1_500 });
    const t0 = clock.now();
    await runUntilDone(clock, repo, 3);
    expect(started.map(([name]) => name)).toEqual(['first', 'mail', 'second']);
    const [, firstAt] = started[0]!;
    const [, secondAt] = started[2]!;
    expect(firstAt - t0).toBe(1_000);
    // The second starts within a backoff (≤ 1 s) of the first ending, well before a lease or sync window.
    expect(secondAt - (firstAt + RUN_MS)).toBeGreaterThanOrEqual(0);
    expect(secondAt - (firstAt + RUN_MS)).toBeLessThanOrEqual(1_000);
    const waited = [...a.limited, ...b.limited];
    expect(waited.length).toBeGreaterThan(0);
    for (const event of waited) expect(event.retryAt.getTime() - clock.now()).toBeLessThanOrEqual(1_000);
    await Promise.all([a.scheduler.stop(), b.scheduler.stop()]);
    await Promise.all([a.storage.stop(), b.storage.stop()]);
  });

  it('on a repository without the capability the limit holds per node only, and start() says so', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const plain = withoutWorkLimits(repo);
    expect(isWorkLimiter(plain)).toBe(false);
    const gauge = new RunGauge(repo);
    const registry = new WorkRegistry().register('encode', gauge.work(clock), { concurrency: 1 });
    const events: string[] = [];
    const a = await startNode(plain, registry, clock, 'node-a', events);
    const b = await startNode(withoutWorkLimits(repo.openPeer()), registry, clock, 'node-b', events);
    expect(events).toEqual(['node-local:encode', 'node-local:encode']);
    for (let i = 0; i < 4; i++) await (i % 2 === 0 ? a : b).scheduler.schedule({ workId: 'encode', param: { i }, delayMs: 1_000 });
    await runUntilDone(clock, repo, 4);
    // One per node: two at once across the two nodes, never more.
    expect(gauge.most).toBe(2);
    expect((await repo.countByState()).Done).toBe(4);
    expect(a.limited).toEqual([]);
    await Promise.all([a.scheduler.stop(), b.scheduler.stop()]);
    await Promise.all([a.storage.stop(), b.storage.stop()]);
  });

  it('refuses an invalid concurrency at registration', () => {
    for (const concurrency of [0, -1, 1.5, Number.NaN]) {
      expect(() => new WorkRegistry().register('w', () => undefined, { concurrency }), String(concurrency)).toThrow(/concurrency/);
    }
  });
});
