import type { Clock } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, WorkRegistry, type TaskInfo } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { deferred, startNode } from './storage-helpers.js';

async function insertDue(repo: MemoryRepository, clock: Clock, count: number, workId = 'w'): Promise<void> {
  await repo.insertMany(Array.from({ length: count }, (_, i) => ({ id: `${workId}-${i}`, workId, scheduledAt: new Date(clock.now() - 1000) })));
}

async function turns(clock: VirtualClock, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await clock.advance(0);
}

async function working(repo: MemoryRepository): Promise<TaskInfo[]> {
  return (await repo.list({ state: 'Working', limit: 1000 })).tasks;
}

describe('claims ahead: a node holds claimed tasks beyond its free slots, and they spend no attempt until they start', () => {
  it('holds at most concurrency + claimAhead tasks Working; the ones waiting for a slot are unstarted, attempt 0', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 20);
    const gate = deferred();
    const registry = new WorkRegistry().register('w', () => gate.promise);
    await startNode(repo, registry, clock, { concurrency: 3, claimAhead: 4 });
    await turns(clock, 10);

    const held = await working(repo);
    expect(held).toHaveLength(7);
    const started = held.filter((task) => task.lease?.started === true);
    const waiting = held.filter((task) => task.lease?.started === false);
    expect(started).toHaveLength(3);
    expect(started.every((task) => task.attempt === 1 && task.claims === 1)).toBe(true);
    expect(waiting).toHaveLength(4);
    expect(waiting.every((task) => task.attempt === 0 && task.claims === 1)).toBe(true);
    for (const task of waiting) expect(await repo.listAttempts(task.id)).toEqual([]);
    expect((await repo.countByState()).Initialized).toBe(13);

    gate.resolve();
    await turns(clock, 60);
    const done = (await repo.list({ state: 'Done', limit: 100 })).tasks;
    expect(done).toHaveLength(20);
    // One claim and one attempt per task: no claim was handed back and taken again.
    expect(done.every((task) => task.attempt === 1 && task.claims === 1)).toBe(true);
  });

  it('claimAhead 0 claims only for free slots', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 10);
    const gate = deferred();
    await startNode(repo, new WorkRegistry().register('w', () => gate.promise), clock, { concurrency: 2, claimAhead: 0 });
    await turns(clock, 10);
    expect(await working(repo)).toHaveLength(2);
    gate.resolve();
    await turns(clock, 40);
    expect((await repo.countByState()).Done).toBe(10);
  });

  it('refills the buffer as runs take claims, without waiting for an idle slot', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 40);
    const gates: Array<() => void> = [];
    const registry = new WorkRegistry().register('w', () => new Promise<void>((resolve) => gates.push(resolve)));
    await startNode(repo, registry, clock, { concurrency: 2, claimAhead: 4 });
    await turns(clock, 10);
    expect(await working(repo)).toHaveLength(6);
    // Two runs end: the two next start from the buffer, and the buffer is claimed full again behind them.
    gates.splice(0, 2).forEach((resolve) => resolve());
    await turns(clock, 10);
    const held = await working(repo);
    expect(held).toHaveLength(6);
    expect(held.filter((task) => task.lease?.started === false)).toHaveLength(4);
    expect((await repo.countByState()).Done).toBe(2);
    // Drain the rest.
    for (let i = 0; i < 40 && (await repo.countByState()).Done < 40; i++) {
      gates.splice(0).forEach((resolve) => resolve());
      await turns(clock, 5);
    }
    expect((await repo.countByState()).Done).toBe(40);
  });

  it('a graceful stop hands the buffer back at once: Initialized, no attempt spent, no attempt record', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 10);
    const registry = new WorkRegistry().register('w', (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)));
    const node = await startNode(repo, registry, clock, { concurrency: 2, claimAhead: 3 });
    await turns(clock, 10);
    const buffered = (await working(repo)).filter((task) => task.lease?.started === false).map((task) => task.id);
    expect(buffered).toHaveLength(3);

    const stopping = node.scheduler.stop({ timeoutMs: 5_000 });
    await turns(clock, 5);
    // Before the running works end, the buffered claims are already back.
    for (const id of buffered) {
      const task = await repo.getById(id);
      expect(task).toMatchObject({ state: 'Initialized', attempt: 0, claims: 1, unstartedClaims: 0, lease: null });
      expect(await repo.listAttempts(id)).toEqual([]);
    }
    await clock.advance(5_000);
    await stopping;
    await node.storage.stop();
  });

  it('a cancel written by another node before a buffered task starts wins: the work never runs', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 4);
    const ran: string[] = [];
    const first = deferred();
    const registry = new WorkRegistry().register('w', async (ctx) => {
      ran.push(ctx.taskId);
      if (ran.length === 1) await first.promise;
    });
    // No sync loop: the cancel reaches this node only through the refused start.
    await startNode(repo.openPeer(), registry, clock, { multi: true, nodeId: 'a', leaseMs: 30_000, concurrency: 1, claimAhead: 3, syncIntervalMs: 0 });
    await turns(clock, 10);
    const buffered = (await working(repo)).filter((task) => task.lease?.started === false).map((task) => task.id);
    expect(buffered).toHaveLength(3);
    const victim = buffered[0]!;
    expect((await repo.openPeer().markAsCancelled(victim, { reason: 'operator' })).cancelled).toBe(true);

    first.resolve();
    await turns(clock, 30);
    expect(ran).not.toContain(victim);
    expect(ran).toHaveLength(3);
    expect(await repo.getById(victim)).toMatchObject({ state: 'Cancelled', attempt: 0 });
    expect(await repo.listAttempts(victim)).toEqual([]);
  });

  it('tasks a dead node held claimed ahead are reclaimed with no attempt spent, and run once elsewhere', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 5);
    // The dead node claimed all five ahead, then died before starting any.
    const dead = await repo.openPeer().claimDue({ owner: 'dead', leaseMs: 10_000, limit: 5 });
    expect(dead).toHaveLength(5);
    const runs: Array<{ id: string; attempt: number; fence: number | undefined }> = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push({ id: ctx.taskId, attempt: ctx.attempt, fence: ctx.fencingToken }), {
      maxAttempts: 1,
    });
    await startNode(repo.openPeer(), registry, clock, { multi: true, nodeId: 'b', leaseMs: 10_000, concurrency: 2, syncIntervalMs: 1_000 });
    await turns(clock, 5);
    expect(runs).toEqual([]);

    await clock.advance(12_000);
    await turns(clock, 20);
    expect(runs.map((run) => run.id).sort()).toEqual(dead.map((task) => task.id).sort());
    // maxAttempts 1 and a lost claim before: each still had its one attempt, and its second claim fences the first.
    expect(runs.every((run) => run.attempt === 1 && run.fence === 2)).toBe(true);
    for (const task of dead) {
      expect(await repo.getById(task.id)).toMatchObject({ state: 'Done', attempt: 1, claims: 2, unstartedClaims: 0 });
      const attempts = await repo.listAttempts(task.id);
      expect(attempts.map((attempt) => [attempt.node, attempt.outcome])).toEqual([['b', 'succeeded']]);
    }
  });

  it('a task whose claims keep expiring unstarted fails as a poison task after maxUnstartedClaims, without running', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    await insertDue(repo, clock, 1);
    const ran: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void ran.push(ctx.taskId));
    const node = await startNode(repo.openPeer(), registry, clock, {
      multi: true,
      nodeId: 'b',
      leaseMs: 10_000,
      concurrency: 1,
      syncIntervalMs: 1_000,
      maxUnstartedClaims: 2,
      noStart: true,
    });
    // Two nodes in a row died holding it claimed ahead.
    const peer = repo.openPeer();
    await peer.claimDue({ owner: 'dead-1', leaseMs: 0, limit: 1 });
    await peer.reclaimExpired();
    await peer.claimDue({ owner: 'dead-2', leaseMs: 0, limit: 1 });
    await node.storage.start(node.scheduler);
    node.scheduler.start();
    await turns(clock, 20);

    expect(ran).toEqual([]);
    const task = await repo.getById('w-0');
    expect(task).toMatchObject({ state: 'Failed', attempt: 0, claims: 2, unstartedClaims: 2 });
    expect(task.lastError).toMatchObject({ code: 'POISON_TASK' });
  });

  it('hands each run the claim count as its fencing token', async () => {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const fences: Array<number | undefined> = [];
    const registry = new WorkRegistry().register('w', (ctx) => {
      fences.push(ctx.fencingToken);
      if (fences.length === 1) throw new Error('first run fails');
    }, { maxAttempts: 2, retry: () => 1_000 });
    const node = await startNode(repo, registry, clock, { concurrency: 1 });
    const handle = await node.scheduler.schedule({ workId: 'w', param: null });
    await turns(clock, 5);
    await clock.advance(1_000);
    await handle.result;
    expect(fences).toEqual([1, 2]);
  });
});

describe('due is judged by the database clock, not the node clock', () => {
  it('a node whose clock runs 2 s ahead does not start a task before the database says it is due', async () => {
    const clock = new VirtualClock();
    // The database's clock lags this node's by 2 s.
    const dbClock: Clock = { now: () => clock.now() - 2_000, setTimer: (callback, delayMs) => clock.setTimer(callback, delayMs) };
    const repo = new MemoryRepository({ clock: dbClock });
    const started: number[] = [];
    const registry = new WorkRegistry().register('w', () => void started.push(dbClock.now()));
    const node = await startNode(repo, registry, clock, { concurrency: 1 });
    const handle = await node.scheduler.schedule({ workId: 'w', param: null, delayMs: 1_000 });
    const dueAt = (await repo.getById(handle.taskId)).scheduledAt.getTime();

    await clock.advance(1_000);
    await turns(clock, 5);
    // The node's timer fired; the database refused the claim (not due by its clock) and wrote nothing.
    expect(started).toEqual([]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Initialized', claims: 0, attempt: 0 });

    await clock.advance(2_000);
    await turns(clock, 5);
    expect(started).toHaveLength(1);
    expect(started[0]).toBeGreaterThanOrEqual(dueAt);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', claims: 1, attempt: 1 });
  });
});

describe('a node whose clock runs ahead of the database', () => {
  it('runs the tasks sync finds due by its own clock only once the database says they are due, alone', async () => {
    const clock = new VirtualClock();
    // The database's clock lags this node's by 2 s.
    const dbClock: Clock = { now: () => clock.now() - 2_000, setTimer: (callback, delayMs) => clock.setTimer(callback, delayMs) };
    const repo = new MemoryRepository({ clock: dbClock });
    const started: Array<{ id: string; dbNow: number }> = [];
    const registry = new WorkRegistry().register('w', (ctx) => void started.push({ id: ctx.taskId, dbNow: dbClock.now() }));
    await startNode(repo.openPeer(), registry, clock, { multi: true, nodeId: 'fast', leaseMs: 30_000, concurrency: 2, syncIntervalMs: 500 });
    // Another client inserts five tasks due 0.5 to 1.5 s from now by the database: already due by this node's clock,
    // so sync hands them to the backlog claimer, whose claimDue (by the database's clock) finds none of them yet.
    const t0 = dbClock.now();
    await repo.openPeer().insertMany(Array.from({ length: 5 }, (_, n) => ({ id: `t${n}`, workId: 'w', scheduledAt: new Date(t0 + 500 + n * 250) })));
    for (let i = 0; i < 60 && started.length < 5; i++) await clock.advance(100);

    expect(started.map((run) => run.id).sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
    for (const run of started) {
      const dueAt = t0 + 500 + Number(run.id.slice(1)) * 250;
      expect(run.dbNow).toBeGreaterThanOrEqual(dueAt);
      // Tried again with backoff (100 ms doubling to 2 s): started within a few seconds of due, not at a window reload.
      expect(run.dbNow - dueAt).toBeLessThanOrEqual(3_500);
    }
  });
});

describe('the claim order ages across nodes', () => {
  /**
   * Two nodes of one slot each, a low-priority task due at the start, and a stream of priority-10 tasks inserted by
   * another client as fast as the nodes run them, so some high task always waits in the database.
   * @returns when the low task started (ms after the start), or undefined when it had not after 30 s
   */
  async function lowStartsAfter(agingMs: number): Promise<number | undefined> {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const start = clock.now();
    let lowStartedAt: number | undefined;
    const registry = (): WorkRegistry =>
      new WorkRegistry()
        .register('high', (ctx) => new Promise<void>((resolve) => ctx.clock!.setTimer(resolve, 100)))
        .register('low', () => void (lowStartedAt = clock.now() - start));
    const producer = repo.openPeer();
    await producer.insert({ workId: 'low', scheduledAt: new Date(start), priority: 0 });
    await producer.insertMany(Array.from({ length: 10 }, () => ({ workId: 'high', scheduledAt: new Date(start), priority: 10 })));
    for (const nodeId of ['a', 'b']) {
      await startNode(repo.openPeer(), registry(), clock, { multi: true, nodeId, leaseMs: 30_000, concurrency: 1, claimAhead: 1, agingMs, syncIntervalMs: 200 });
    }
    for (let t = 0; t < 30_000 && lowStartedAt === undefined; t += 50) {
      await producer.insert({ workId: 'high', scheduledAt: new Date(clock.now()), priority: 10 });
      await clock.advance(50);
    }
    if (lowStartedAt !== undefined) expect((await repo.countByState()).Initialized).toBeGreaterThan(0);
    return lowStartedAt;
  }

  it('a low-priority task starts within about (priority gap × agingMs) under a steady stream of higher ones', async () => {
    const startedAfter = await lowStartsAfter(1_000);
    expect(startedAfter).toBeDefined();
    // A gap of 10 points at one point a second: about 10 s, plus the wait the high tasks age by themselves.
    expect(startedAfter!).toBeGreaterThanOrEqual(9_000);
    expect(startedAfter!).toBeLessThanOrEqual(15_000);
  });

  it('without aging the same task is still waiting after 30 s (what the bound above prevents)', async () => {
    expect(await lowStartsAfter(Number.POSITIVE_INFINITY)).toBeUndefined();
  });
});
