import { InvalidInputError, type Middleware } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, WorkRegistry } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { deferred, startNode, type Deferred } from './storage-helpers.js';

/** What one client of the repository asked for. */
interface Calls {
  /** Claims of one task by id (claim, claimWithinLimit). */
  claim: number;
  claimDue: number[];
  claimedRows: number;
}

/**
 * A client of `repo` that counts its claims; `gate` (`claimGate`), when set, holds each claimDue (claim by id)
 * until it resolves: a database round trip held open by the test. A proxy
 * rather than a subclass, so that two clients can share one store (peers) and each count its own calls.
 */
function countingClient(repo: MemoryRepository): {
  client: MemoryRepository;
  calls: Calls;
  gate: { current: Deferred<void> | undefined };
  claimGate: { current: Deferred<void> | undefined };
} {
  const calls: Calls = { claim: 0, claimDue: [], claimedRows: 0 };
  const gate: { current: Deferred<void> | undefined } = { current: undefined };
  const claimGate: { current: Deferred<void> | undefined } = { current: undefined };
  const client = new Proxy(repo, {
    get(target, property) {
      if (property === 'claim') {
        return async (...args: Parameters<MemoryRepository['claim']>) => {
          calls.claim++;
          await claimGate.current?.promise;
          return target.claim(...args);
        };
      }
      if (property === 'claimWithinLimit') {
        return (...args: Parameters<MemoryRepository['claimWithinLimit']>) => {
          calls.claim++;
          return target.claimWithinLimit(...args);
        };
      }
      if (property === 'claimDue') {
        return async (options: Parameters<MemoryRepository['claimDue']>[0]) => {
          calls.claimDue.push(options.limit);
          await gate.current?.promise;
          const rows = await target.claimDue(options);
          calls.claimedRows += rows.length;
          return rows;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { client, calls, gate, claimGate };
}

async function insertDue(repo: MemoryRepository, clock: VirtualClock, count: number, workId = 'w'): Promise<void> {
  const tasks = Array.from({ length: count }, (_, i) => ({ id: `${workId}-${i}`, workId, scheduledAt: new Date(clock.now() - 1000) }));
  await repo.insertMany(tasks);
}

describe('the backlog is claimed in batches as run slots free up', () => {
  it('a stored backlog runs once per task, claimed with claimDue in batches no larger than the free slots', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 50);
    const runs = new Map<string, number>();
    const registry = new WorkRegistry().register('w', (ctx) => void runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1));
    const { client, calls } = countingClient(repo);
    // No claims ahead: this test pins the free-slot bound itself (claim-ahead.test.ts covers the buffer).
    const node = await startNode(client, registry, clock, { concurrency: 8, claimAhead: 0 });
    for (let i = 0; i < 20; i++) await clock.advance(0);

    expect(runs.size).toBe(50);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect((await repo.countByState()).Done).toBe(50);
    expect(calls.claim).toBe(0);
    expect(calls.claimedRows).toBe(50);
    expect(Math.max(...calls.claimDue)).toBeLessThanOrEqual(8);
    expect(calls.claimDue.length).toBeLessThan(50);
    const sources = node.events.filter(([name]) => name === 'task:scheduled').map(([, p]) => (p as { source: string }).source);
    expect(sources).toEqual(Array.from({ length: 50 }, () => 'claimed'));
    expect(node.events.filter(([name]) => name === 'task:started')).toHaveLength(50);
  });

  it('never holds more Working tasks than the node can run: slow works keep the rest of the backlog Initialized', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 20);
    const gate = deferred();
    const registry = new WorkRegistry().register('w', () => gate.promise);
    await startNode(repo, registry, clock, { concurrency: 3, claimAhead: 0 });
    for (let i = 0; i < 10; i++) await clock.advance(0);
    expect(await repo.countByState()).toMatchObject({ Working: 3, Initialized: 17 });
    gate.resolve();
    for (let i = 0; i < 40; i++) await clock.advance(0);
    expect((await repo.countByState()).Done).toBe(20);
  });

  it('two nodes share a backlog: each task is claimed once, by one node, and runs once', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 60);
    const runs = new Map<string, string[]>();
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register('w', (ctx) => void runs.set(ctx.taskId, [...(runs.get(ctx.taskId) ?? []), node]));
    const a = countingClient(repo.openPeer());
    const b = countingClient(repo.openPeer());
    await startNode(a.client, registry('a'), clock, { multi: true, nodeId: 'a', leaseMs: 9000, concurrency: 4 });
    await startNode(b.client, registry('b'), clock, { multi: true, nodeId: 'b', leaseMs: 9000, concurrency: 4 });
    for (let i = 0; i < 40; i++) await clock.advance(0);

    expect(runs.size).toBe(60);
    expect([...runs.values()].every((nodes) => nodes.length === 1)).toBe(true);
    // No claim was lost: every row claimed was claimed once, and neither node held the backlog on timers.
    expect(a.calls.claimedRows + b.calls.claimedRows).toBe(60);
    expect(a.calls.claim + b.calls.claim).toBe(0);
    expect(a.calls.claimedRows).toBeGreaterThan(0);
    expect(b.calls.claimedRows).toBeGreaterThan(0);
  });

  it('a batch that claims a task this node holds on a timer gives the claim to that timer\'s run: one run, no hand-back', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    // X is held on a timer (due in 1 s); Y is inserted by another node just before X falls due, so that the sync
    // at 1 s finds backlog and the batch claims both X and Y while X's own timer fires.
    await repo.insert({ id: 'x', workId: 'w', scheduledAt: new Date(clock.now() + 1000) });
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const { client, calls } = countingClient(repo.openPeer());
    const node = await startNode(client, registry, clock, { multi: true, nodeId: 'a', leaseMs: 9000, syncIntervalMs: 1000 });
    await clock.advance(999);
    await repo.insert({ id: 'y', workId: 'w', scheduledAt: new Date(clock.now()) });
    for (let i = 0; i < 10; i++) await clock.advance(i === 0 ? 1 : 0);

    expect(runs.sort()).toEqual(['x', 'y']);
    expect(calls.claimedRows).toBe(2);
    expect((await repo.listAttempts('x')).map((a) => a.outcome)).toEqual(['succeeded']);
    expect((await repo.getById('x')).attempt).toBe(1);
    expect(node.events.filter(([name]) => name === 'task:started')).toHaveLength(2);
  });

  it('a batch claim made while this node\'s own claim by id is under way: that run takes the batch claim', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await repo.insert({ id: 'x', workId: 'w', scheduledAt: new Date(clock.now() + 999) });
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const { client, calls, claimGate } = countingClient(repo.openPeer());
    const node = await startNode(client, registry, clock, { multi: true, nodeId: 'a', leaseMs: 9000, syncIntervalMs: 1000 });
    await clock.advance(998);
    await repo.insert({ id: 'y', workId: 'w', scheduledAt: new Date(clock.now()) });
    // X's timer fires at 999 ms and its claim by id hangs; the sync of 1 s finds Y and the batch claims X and Y.
    claimGate.current = deferred();
    await clock.advance(1);
    expect(calls.claim).toBe(1);
    for (let i = 0; i < 10; i++) await clock.advance(i === 0 ? 1 : 0);
    expect(calls.claim).toBe(1);
    expect(calls.claimedRows).toBe(2);
    expect(runs).toEqual(['y']);
    claimGate.current.resolve();
    for (let i = 0; i < 10; i++) await clock.advance(0);

    expect(runs.sort()).toEqual(['x', 'y']);
    expect((await repo.listAttempts('x')).map((a) => a.outcome)).toEqual(['succeeded']);
    expect(node.events.some(([name]) => name === 'repository:error')).toBe(false);
    // The work was not mistaken for one the chain refuses: a later backlog task is still claimed in a batch.
    await repo.insert({ id: 'z', workId: 'w', scheduledAt: new Date(clock.now()) });
    await clock.advance(1000);
    for (let i = 0; i < 10; i++) await clock.advance(0);
    expect(runs).toContain('z');
    expect(calls.claimedRows).toBe(3);
  });

  it('a task another node inserts due now is claimed at the next sync, not at the claimer\'s next check', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const started: number[] = [];
    const registry = new WorkRegistry().register('w', () => void started.push(clock.now()));
    const t0 = clock.now();
    await startNode(repo.openPeer(), registry, clock, { multi: true, nodeId: 'b', leaseMs: 9000, syncIntervalMs: 50 });
    await clock.advance(10);
    await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now()) });
    await clock.advance(100);
    expect(started).toHaveLength(1);
    expect(started[0]! - t0).toBeLessThanOrEqual(60);
  });

  it('claims that come back after the node stopped are handed back, uncounted, for the next start', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 5);
    const ran: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void ran.push(ctx.taskId));
    const { client, calls, gate } = countingClient(repo);
    gate.current = deferred();
    const node = await startNode(client, registry, clock, { concurrency: 4 });
    await clock.advance(0);
    // Four free slots and four claims ahead (claimAhead defaults to the concurrency).
    expect(calls.claimDue).toEqual([8]);
    await node.scheduler.stop();
    const stopping = node.storage.stop();
    gate.current.resolve();
    await stopping;
    expect(ran).toEqual([]);
    const tasks = (await repo.list({ limit: 10 })).tasks;
    expect(tasks.map((t) => t.state)).toEqual(Array.from({ length: 5 }, () => 'Initialized'));
    expect(tasks.every((t) => t.attempt === 0 && t.claims === 1)).toBe(true);
    // Claimed ahead and never started: no attempt record was opened, so none is closed.
    expect(await repo.listAttempts('w-0')).toEqual([]);
  });

  it('works with a concurrency limit, unknown works, and claimBacklog: false stay on timers and claims by id', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 3, 'limited');
    await insertDue(repo, clock, 3, 'free');
    await insertDue(repo, clock, 2, 'unknown');
    const registry = new WorkRegistry()
      .register('limited', () => undefined, { concurrency: 1 })
      .register('free', () => undefined);
    const { client, calls } = countingClient(repo);
    await startNode(client, registry, clock);
    for (let i = 0; i < 20; i++) await clock.advance(0);
    expect(await repo.countByState()).toMatchObject({ Done: 6, Initialized: 2 });
    expect(calls.claimedRows).toBe(3); // the free work's backlog
    expect(calls.claim).toBeGreaterThanOrEqual(3); // the limited work's, one by one

    const off = countingClient(new MemoryRepository({ clock }));
    await insertDue(off.client, clock, 4, 'free');
    await startNode(off.client, registry, clock, { claimBacklog: false });
    for (let i = 0; i < 20; i++) await clock.advance(0);
    expect(off.calls.claimDue).toEqual([]);
    expect(off.calls.claim).toBe(4);
  });

  it('a work whose batch-claimed task the chain refuses is held on timers from then on: no claim loop', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await repo.insert({ id: 'poison', workId: 'w', scheduledAt: new Date(clock.now()), param: 'poison' });
    const refuse: Middleware = (next) => (ctx) => {
      if (ctx.param === 'poison') throw new InvalidInputError('this node refuses poison');
      return next(ctx);
    };
    const registry = new WorkRegistry().register('w', () => undefined);
    const { client, calls } = countingClient(repo);
    const node = await startNode(client, registry, clock, { before: [refuse], syncIntervalMs: 1000 });
    await clock.advance(5000);
    expect(calls.claimedRows).toBe(1);
    const poison = await repo.getById('poison');
    expect(poison).toMatchObject({ state: 'Initialized', attempt: 0 });
    expect(node.events.filter(([name]) => name === 'sync:error').length).toBeGreaterThanOrEqual(1);
  });
});
