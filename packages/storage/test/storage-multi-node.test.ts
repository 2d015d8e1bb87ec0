import { TaskCancelledError } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { LeaseLostError, MemoryRepository, WorkRegistry, multiNodeStorage, type ChangeNotifier, type TaskChangeNotice, type TaskLeaseLostEvent } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { allTasks, deferred, eventNames, fixture, startNode, untilAborted, type TestNode } from './storage-helpers.js';

const LEASE = 9_000;

async function twoNodes(registry: WorkRegistry, options: { syncIntervalMs?: number } = {}): Promise<{ clock: VirtualClock; repo: MemoryRepository; a: TestNode; b: TestNode }> {
  const { clock, repo } = fixture();
  const common = { multi: true, leaseMs: LEASE, syncIntervalMs: options.syncIntervalMs ?? 1000 };
  const a = await startNode(repo, registry, clock, { ...common, nodeId: 'node-a' });
  const b = await startNode(repo.openPeer(), registry, clock, { ...common, nodeId: 'node-b' });
  return { clock, repo, a, b };
}

describe('multiNodeStorage options', () => {
  it('requires a nodeId and a leaseMs', () => {
    const registry = new WorkRegistry();
    const repo = new MemoryRepository();
    expect(() => multiNodeStorage(repo, registry, { nodeId: '', leaseMs: 1000 })).toThrow(/nodeId/);
    expect(() => multiNodeStorage(repo, registry, { nodeId: 'a' } as never)).toThrow(/leaseMs/);
    expect(() => multiNodeStorage(repo, registry, { nodeId: 'a', leaseMs: 1 })).toThrow(/leaseMs/);
  });
});

describe('semantics 1: one run per task across nodes', () => {
  it('two nodes hold the same task; exactly one runs it, the other handle follows it to the end', async () => {
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => {
      runs.push(ctx.taskId);
      return 'result';
    });
    const { clock, repo, a, b } = await twoNodes(registry);
    const handle = await a.scheduler.schedule({ workId: 'w', delayMs: 5000 });
    await clock.advance(1000); // B's sync picks the task up
    expect(b.scheduler.get(handle.taskId)).toBeDefined();
    await clock.advance(4000);
    await clock.advance(1000);
    expect(runs).toEqual([handle.taskId]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 1 });
    expect(a.scheduler.get(handle.taskId)).toBeUndefined();
    expect(b.scheduler.get(handle.taskId)).toBeUndefined();
    await expect(handle.result).resolves.toBeDefined();
  });

  it('many tasks on two nodes: every task runs exactly once', async () => {
    const runs = new Map<string, number>();
    const registry = new WorkRegistry().register('w', (ctx) => void runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1));
    const { clock, repo, a, b } = await twoNodes(registry);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const node = i % 2 === 0 ? a : b;
      ids.push((await node.scheduler.schedule({ workId: 'w', delayMs: 2000 + (i % 3) * 10 })).taskId);
    }
    await clock.advance(1500); // both nodes hold all twenty
    await clock.advance(2000);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(runs.size).toBe(20);
    expect((await repo.countByState()).Done).toBe(20);
    expect(new Set(ids).size).toBe(20);
  });
});

describe('semantics 2 and 3: leases, reclaim, fencing', () => {
  it('node A dies mid-run; its lease expires; B reclaims and re-runs it as attempt 2; A’s late markAsDone is refused', async () => {
    const repoClock = new VirtualClock();
    const repo = new MemoryRepository({ clock: repoClock });
    const clockA = new VirtualClock(); // A's clock stops when A "dies": no more lease renewals
    const gateA = deferred<string>();
    const runs: Array<{ node: string; attempt: number }> = [];
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register(
        'w',
        async (ctx) => {
          runs.push({ node, attempt: ctx.attempt });
          if (node === 'A') return gateA.promise;
          return 'B did it';
        },
        { maxAttempts: 3 },
      );
    const a = await startNode(repo, registry('A'), clockA, { multi: true, nodeId: 'node-a', leaseMs: LEASE, syncIntervalMs: 1000 });
    const b = await startNode(repo.openPeer(), registry('B'), repoClock, { multi: true, nodeId: 'node-b', leaseMs: LEASE, syncIntervalMs: 1000 });
    const handle = await a.scheduler.schedule({ workId: 'w' });
    await clockA.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Working', lease: { owner: 'node-a' } });
    const tokenA = (await repo.getById(handle.taskId)).lease!.token;

    await repoClock.advance(LEASE - 1000);
    expect(runs).toEqual([{ node: 'A', attempt: 1 }]); // not expired yet: B leaves it alone
    await repoClock.advance(2000);
    expect(runs).toEqual([
      { node: 'A', attempt: 1 },
      { node: 'B', attempt: 2 },
    ]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2 });

    // The zombie wakes up and finishes: its write carries the old token and is refused.
    await expect(repo.markAsDone(handle.taskId, tokenA)).rejects.toBeInstanceOf(LeaseLostError);
    const lost = a.storage.events.once('task:lease-lost');
    gateA.resolve('A did it too');
    const event: TaskLeaseLostEvent = await lost;
    expect(event.taskId).toBe(handle.taskId);
    await clockA.flush();
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2 });
    expect(eventNames(a)).not.toContain('task:succeeded');
    expect(eventNames(b)).toContain('task:succeeded');
    await b.scheduler.stop();
  });

  it('a node that cannot renew its lease aborts the run with LeaseLostError once the lease would expire', async () => {
    const { clock, repo } = fixture();
    const peer = repo.openPeer();
    let reason: unknown;
    const registry = new WorkRegistry().register(
      'w',
      untilAborted((abortReason) => (reason = abortReason)),
      { maxAttempts: 2 },
    );
    const node = await startNode(peer, registry, clock, { multi: true, nodeId: 'n', leaseMs: LEASE, syncIntervalMs: 60_000 });
    const handle = await node.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    peer.setUnavailable(true);
    await clock.advance(LEASE - 1);
    expect(reason).toBeUndefined();
    await clock.advance(1);
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect(eventNames(node)).toContain('task:lease-lost');
    expect(eventNames(node)).toContain('repository:error');
    peer.setUnavailable(false);
    await clock.advance(1000);
    // The run's result was discarded: the node wrote nothing with its stale token.
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
  });

  it('a task whose lease expired with no attempts left is failed by the reclaim, and the handle follows', async () => {
    const repoClock = new VirtualClock();
    const repo = new MemoryRepository({ clock: repoClock });
    const deadClock = new VirtualClock();
    const registry = new WorkRegistry().register('w', () => new Promise(() => undefined));
    const a = await startNode(repo, registry, deadClock, { multi: true, nodeId: 'a', leaseMs: LEASE });
    const handle = await a.scheduler.schedule({ workId: 'w' });
    await deadClock.advance(0);
    const b = await startNode(repo.openPeer(), registry, repoClock, { multi: true, nodeId: 'b', leaseMs: LEASE, syncIntervalMs: 1000 });
    await repoClock.advance(LEASE + 1000);
    expect((await repo.getById(handle.taskId)).state).toBe('Failed');
    expect(b.scheduler.pending).toBe(0);
  });
});

describe('semantics 4: sync is exact', () => {
  it('a sync pass while this node runs a task does not cancel it (gokugen bug)', async () => {
    const gate = deferred<string>();
    let aborted = false;
    const registry = new WorkRegistry().register('w', (ctx) => {
      ctx.signal.addEventListener('abort', () => (aborted = true));
      return gate.promise;
    });
    const { clock, repo, a } = await twoNodes(registry);
    const handle = await a.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    expect(handle.state).toBe('running');
    for (let i = 0; i < 5; i++) {
      await a.storage.sync();
      await clock.advance(1000);
    }
    expect(aborted).toBe(false);
    expect(handle.state).toBe('running');
    expect((await repo.getById(handle.taskId)).lease?.owner).toBe('node-a');
    gate.resolve('ok');
    await expect(handle.result).resolves.toBe('ok');
  });

  it('a runAt moved earlier by another node is picked up', async () => {
    const ran: number[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void ran.push(ctx.clock!.now()));
    const { clock, repo, a, b } = await twoNodes(registry, { syncIntervalMs: 1000 });
    const start = clock.now();
    const handle = await a.scheduler.schedule({ workId: 'w', delayMs: 600_000 });
    await b.storage.stop(); // only A holds it
    await b.scheduler.stop();
    await repo.openPeer().update(handle.taskId, { scheduledAt: new Date(start + 60_000) });
    await clock.advance(60_000);
    expect(ran).toEqual([start + 60_000]);
    await expect(handle.result).resolves.toBeUndefined();
    expect(eventNames(a)).not.toContain('task:cancelled');
  });

  it('a runAt moved later by another node is picked up: the task does not run at its old time', async () => {
    const ran: number[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void ran.push(ctx.clock!.now()));
    const { clock, repo, a, b } = await twoNodes(registry);
    await b.scheduler.stop();
    await b.storage.stop();
    const start = clock.now();
    const handle = await a.scheduler.schedule({ workId: 'w', delayMs: 10_000 });
    await repo.openPeer().update(handle.taskId, { scheduledAt: new Date(start + 30_000), priority: 5 });
    await clock.advance(20_000);
    expect(ran).toEqual([]);
    expect(handle.state).toBe('scheduled');
    expect(handle.runAt.getTime()).toBe(start + 30_000);
    expect(handle.priority).toBe(5);
    await clock.advance(10_000);
    expect(ran).toEqual([start + 30_000]);
    expect(handle.state).toBe('done');
  });

  it('a runAt changed right before the timer fires (before any sync) is still honoured at claim time', async () => {
    const ran: number[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void ran.push(ctx.clock!.now()));
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry, clock, { multi: true, nodeId: 'a', leaseMs: LEASE, syncIntervalMs: 0 });
    const start = clock.now();
    const handle = await node.scheduler.schedule({ workId: 'w', delayMs: 1000 });
    await repo.openPeer().update(handle.taskId, { scheduledAt: new Date(start + 5000) });
    await clock.advance(1000);
    expect(ran).toEqual([]);
    await clock.advance(4000);
    expect(ran).toEqual([start + 5000]);
  });

  it('a task inserted by another node is scheduled here; one cancelled elsewhere is dropped here', async () => {
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param as string));
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry, clock, { multi: true, nodeId: 'a', leaseMs: LEASE, syncIntervalMs: 1000 });
    const other = repo.openPeer();
    const { task: kept } = await other.insert({ workId: 'w', scheduledAt: new Date(clock.now() + 5000), param: 'kept' });
    const { task: dropped } = await other.insert({ workId: 'w', scheduledAt: new Date(clock.now() + 5000), param: 'dropped' });
    await clock.advance(1000);
    expect(node.scheduler.pending).toBe(2);
    await other.markAsCancelled(dropped.id);
    await clock.advance(1000);
    expect(node.scheduler.pending).toBe(1);
    await clock.advance(5000);
    expect(runs).toEqual(['kept']);
    expect((await repo.getById(kept.id)).state).toBe('Done');
    expect((await repo.getById(dropped.id)).state).toBe('Cancelled');
  });

  it('a cancel from another node aborts this node’s run with a TaskCancelledError', async () => {
    let reason: unknown;
    const registry = new WorkRegistry().register(
      'w',
      untilAborted((abortReason) => (reason = abortReason)),
    );
    const { clock, repo, a, b } = await twoNodes(registry);
    const handle = await a.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    expect(handle.state).toBe('running');
    await expect(b.storage.cancel(handle.taskId)).resolves.toBe(true);
    await clock.advance(1000);
    expect(reason).toBeInstanceOf(TaskCancelledError);
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect((await repo.getById(handle.taskId)).state).toBe('Cancelled');
  });

  it('a workId this node does not know is reported once and left untouched for a node that knows it', async () => {
    const { clock, repo } = fixture();
    const { task } = await repo.insert({ workId: 'elsewhere', scheduledAt: new Date(clock.now()) });
    const node = await startNode(repo, new WorkRegistry(), clock, { multi: true, nodeId: 'a', leaseMs: LEASE, syncIntervalMs: 1000 });
    await clock.advance(5000);
    expect(node.events.filter(([name]) => name === 'sync:unknown-work')).toHaveLength(1);
    expect(await repo.getById(task.id)).toMatchObject({ state: 'Initialized', attempt: 0 });
    const knowing = await startNode(repo.openPeer(), new WorkRegistry().register('elsewhere', () => 'mine'), clock, {
      multi: true,
      nodeId: 'b',
      leaseMs: LEASE,
    });
    await clock.advance(0);
    expect((await repo.getById(task.id)).state).toBe('Done');
    await knowing.scheduler.stop();
  });

  it('the window: a task due in 10 days is not held in memory, and is scheduled when it enters the window', async () => {
    const { clock, repo } = fixture();
    const runs: number[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.clock!.now()));
    const hour = 3_600_000;
    const due = clock.now() + 10 * 24 * hour;
    await repo.insert({ workId: 'w', scheduledAt: new Date(due) });
    const node = await startNode(repo, registry, clock, { syncWindowMs: hour, syncIntervalMs: 10 * 60_000, leaseMs: 60_000 });
    const local = await node.scheduler.schedule({ workId: 'w', runAt: due + 1 });
    expect(node.scheduler.pending).toBe(0);
    expect(local.state).toBe('scheduled');
    await clock.advance(10 * 24 * hour - 2 * hour);
    expect(node.scheduler.pending).toBe(0);
    // The window is reloaded every half window: a task is held at least half a window before it is due.
    await clock.advance(1.5 * hour);
    expect(node.scheduler.pending).toBe(2);
    await clock.advance(hour / 2);
    expect(runs).toEqual([due]);
    await clock.advance(1);
    expect(runs).toEqual([due, due + 1]);
    await expect(local.result).resolves.toBeUndefined();
    // Ten virtual days fire the backlog generator's 1 s check timer about 864,000 times: 14-16 s of wall time on an
    // idle 2-core machine, so 20 s timed out under load.
  }, 60_000);

  it('sync reports what it did', async () => {
    const { clock, repo } = fixture();
    await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now() + 1000) });
    await repo.insert({ workId: 'unknown', scheduledAt: new Date(clock.now() + 1000) });
    const registry = new WorkRegistry().register('w', () => 1);
    const node = await startNode(repo, registry, clock, { noStart: true });
    const report = await node.storage.start(node.scheduler);
    expect(report).toMatchObject({ scheduled: 1, unknown: 1 });
    await expect(singleNodeSyncBeforeStart()).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });
});

function singleNodeSyncBeforeStart(): Promise<unknown> {
  return multiNodeStorage(new MemoryRepository(), new WorkRegistry(), { nodeId: 'x', leaseMs: 1000 }).sync();
}

describe('semantics 5: nothing is lost when the database blinks', () => {
  it('writes are retried with backoff while the database is down, events report it, and the state lands after', async () => {
    const { clock, repo } = fixture();
    const client = repo.openPeer();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param as string));
    // Every failure reported (the default rate-limits them): this test counts the tries.
    const node = await startNode(client, registry, clock, { syncIntervalMs: 1000, repositoryErrorIntervalMs: 0 });
    const first = await node.scheduler.schedule({ workId: 'w', param: 'one', delayMs: 1000 });
    const second = await node.scheduler.schedule({ workId: 'w', param: 'two', delayMs: 3000 });
    client.setUnavailable(true);
    await clock.advance(5000);
    const errors = node.events.filter(([name]) => name === 'repository:error').map(([, payload]) => payload as { operation: string; attempt: number });
    expect(errors.length).toBeGreaterThan(3);
    expect(errors.map((e) => e.operation)).toContain('claim');
    expect(Math.max(...errors.map((e) => e.attempt))).toBeGreaterThan(2);
    expect(runs).toEqual([]); // nothing runs unclaimed
    expect(node.scheduler.started).toBe(true);
    expect((await repo.countByState()).Initialized).toBe(2);

    client.setUnavailable(false);
    await clock.advance(15_000);
    expect(runs.sort()).toEqual(['one', 'two']);
    await expect(first.result).resolves.toBeUndefined();
    await expect(second.result).resolves.toBeUndefined();
    expect((await repo.countByState()).Done).toBe(2);
  });

  it('a completion write that fails is retried until it lands: the task ends Done, not stuck', async () => {
    const { clock, repo } = fixture();
    const client = repo.openPeer();
    const gate = deferred();
    const registry = new WorkRegistry().register('w', () => gate.promise);
    const node = await startNode(client, registry, clock, { syncIntervalMs: 60_000, repositoryErrorIntervalMs: 0 });
    const handle = await node.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    client.setUnavailable(true);
    gate.resolve();
    await clock.advance(3000);
    expect(handle.state).toBe('running');
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
    const markFailures = node.events.filter(([name, p]) => name === 'repository:error' && (p as { operation: string }).operation === 'markAsDone');
    expect(markFailures.length).toBeGreaterThan(2);
    client.setUnavailable(false);
    await clock.advance(10_000);
    expect((await repo.getById(handle.taskId)).state).toBe('Done');
    expect(handle.state).toBe('done');
    expect(await allTasks(repo)).toHaveLength(1);
  });

  it('a schedule() during an outage waits for the insert to land', async () => {
    const { clock, repo } = fixture();
    const client = repo.openPeer();
    const registry = new WorkRegistry().register('w', () => 'ok');
    const node = await startNode(client, registry, clock, { syncIntervalMs: 60_000 });
    client.setUnavailable(true);
    const pending = node.scheduler.schedule({ workId: 'w' });
    await clock.advance(2000);
    expect(await allTasks(repo)).toHaveLength(0);
    client.setUnavailable(false);
    await clock.advance(10_000);
    const handle = await pending;
    await clock.advance(0);
    await expect(handle.result).resolves.toBe('ok');
  });
});

/** A MemoryRepository that pushes change notices, as PostgreSQL LISTEN/NOTIFY would (sent by hand in tests). */
class NotifyingRepository extends MemoryRepository implements ChangeNotifier {
  readonly listeners = new Set<(notice: TaskChangeNotice) => void>();

  subscribeChanges(listener: (notice: TaskChangeNotice) => void): Promise<() => Promise<void>> {
    this.listeners.add(listener);
    return Promise.resolve(() => {
      this.listeners.delete(listener);
      return Promise.resolve();
    });
  }

  send(notice: TaskChangeNotice): void {
    for (const listener of this.listeners) listener(notice);
  }
}

describe('change notices (ChangeNotifier)', () => {
  it('a notice triggers a sync after the debounce, without waiting for the sync loop; stop() unsubscribes', async () => {
    const clock = new VirtualClock();
    const repo = new NotifyingRepository({ clock });
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const node = await startNode(repo, registry, clock, { multi: true, nodeId: 'a', leaseMs: LEASE, syncIntervalMs: 0, notifyDebounceMs: 50 });
    expect(repo.listeners.size).toBe(1);
    const { task } = await repo.openPeer().insert({ workId: 'w', scheduledAt: new Date(clock.now()) });
    await clock.advance(10_000);
    expect(runs).toEqual([]); // no loop, no notice: nothing yet
    repo.send({ taskId: task.id, reason: 'inserted' });
    repo.send({ taskId: task.id, reason: 'inserted' });
    await clock.advance(49);
    expect(runs).toEqual([]);
    await clock.advance(1);
    expect(runs).toEqual([task.id]);
    expect(node.events.filter(([name]) => name === 'sync:done')).toHaveLength(2); // the start, then one for the burst
    await node.scheduler.stop();
    await node.storage.stop();
    expect(repo.listeners.size).toBe(0);
  });
});

describe('a uniqueKey held by a task running on another node', () => {
  it('returns a handle that settles when sync sees that task end', async () => {
    const gate = deferred<string>();
    const registry = new WorkRegistry().register('w', () => gate.promise);
    const { clock, repo, a, b } = await twoNodes(registry);
    const first = await a.scheduler.schedule({ workId: 'w', uniqueKey: 'only-one' });
    await clock.advance(0);
    expect((await repo.getById(first.taskId)).lease?.owner).toBe('node-a');
    const second = await b.scheduler.schedule({ workId: 'w', uniqueKey: 'only-one' });
    expect(second.taskId).toBe(first.taskId);
    expect(b.scheduler.pending).toBe(0);
    let settled = false;
    void second.result.then(() => (settled = true));
    await clock.advance(2000);
    expect(settled).toBe(false);
    gate.resolve('done on A');
    await clock.advance(1000);
    expect(settled).toBe(true);
    expect(await allTasks(repo)).toHaveLength(1);
  });
});

describe('claim-path cost: a node that loses a claim does not read the row back', () => {
  it('two nodes hold the same tasks; each runs once, the losers read nothing, and every handle still follows its task to the end', async () => {
    const { clock, repo } = fixture();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const reads = { a: 0, b: 0 };
    const peerA = repo.openPeer();
    const peerB = repo.openPeer();
    for (const [name, peer] of [['a', peerA], ['b', peerB]] as const) {
      const getById = peer.getById.bind(peer);
      peer.getById = (id: string) => {
        reads[name]++;
        return getById(id);
      };
    }
    const common = { multi: true, leaseMs: LEASE, syncIntervalMs: 1000 };
    const a = await startNode(peerA, registry, clock, { ...common, nodeId: 'node-a' });
    const b = await startNode(peerB, registry, clock, { ...common, nodeId: 'node-b' });
    const handles = await Promise.all(Array.from({ length: 6 }, () => a.scheduler.schedule({ workId: 'w', delayMs: 5000 })));
    await clock.advance(1000); // B's sync restores them: both nodes hold a timer of each
    expect(b.events.filter(([name]) => name === 'task:scheduled')).toHaveLength(6);
    await clock.advance(4000); // both timers fire: one claim wins, the other loses
    await clock.advance(1000); // the losers' sync sees the tasks end
    await Promise.all(handles.map((h) => h.result));
    expect(runs.sort()).toEqual(handles.map((h) => h.taskId).sort());
    const started = [...a.events, ...b.events].filter(([name]) => name === 'task:started');
    expect(started).toHaveLength(6);
    expect(reads).toEqual({ a: 0, b: 0 });
    expect((await allTasks(repo)).every((t) => t.state === 'Done' && t.attempt === 1)).toBe(true);
    for (const node of [a, b]) {
      const stopping = node.scheduler.stop();
      await clock.advance(1000);
      await stopping;
      await node.storage.stop();
    }
  });
});
