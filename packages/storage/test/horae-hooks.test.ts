import { nextEvent } from '@horae/core/testing';
import { WorkRegistry, generateStatusHookSecret, type Horae, type StatusChange } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { capturingHook, horaeOn, stopAll, world } from './horae-helpers.js';

const started: Horae[] = [];
afterEach(() => stopAll(started.splice(0)));

async function startHorae(horae: Horae): Promise<Horae> {
  started.push(horae);
  await horae.start();
  return horae;
}

describe('status hooks bridge: storage events → onTransition', () => {
  it('success: null→Initialized→Working→Done, with workId, attempt and the database time of each write', async () => {
    const { clock, repo } = world();
    const hook = capturingHook();
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 'ok'), { statusHooks: hook }));
    const handle = await horae.schedule({ workId: 'w', delayMs: 500 });
    await clock.advance(500);
    await handle.result;
    expect(hook.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Done']);
    expect(hook.changes.map((c) => [c.workId, c.attempt, c.error])).toEqual([
      ['w', 0, undefined],
      ['w', 1, undefined],
      ['w', 1, undefined],
    ]);
    const done = await repo.getById(handle.taskId);
    expect(hook.changes[2]!.time).toEqual(done.updatedAt);
  });

  it('retry then success: …→Working→Initialized (with the error)→Working→Done', async () => {
    const { clock, repo } = world();
    const hook = capturingHook();
    let calls = 0;
    const registry = new WorkRegistry().register('flaky', () => {
      if (++calls === 1) throw new Error('boom');
      return 'ok';
    }, { maxAttempts: 3, retry: () => 1000 });
    const horae = await startHorae(horaeOn(clock, repo, registry, { statusHooks: [hook] }));
    const handle = await horae.schedule({ workId: 'flaky' });
    await clock.advance(0);
    await clock.advance(1000);
    await handle.result;
    expect(hook.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Initialized', 'Initialized→Working', 'Working→Done']);
    const retried = hook.changes[2]!;
    expect(retried.error).toMatchObject({ message: 'boom' });
    expect(hook.changes.map((c) => c.attempt)).toEqual([0, 1, 1, 2, 2]);
  });

  it('failure: …→Working→Failed with the error', async () => {
    const { clock, repo } = world();
    const hook = capturingHook();
    const registry = new WorkRegistry().register('bad', () => {
      throw new Error('always');
    });
    const horae = await startHorae(horaeOn(clock, repo, registry, { statusHooks: hook }));
    const handle = await horae.schedule({ workId: 'bad' });
    await clock.advance(0);
    await expect(handle.result).rejects.toThrow('always');
    expect(hook.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Failed']);
    expect(hook.changes[2]!.error).toMatchObject({ message: 'always' });
  });

  it('cancel: Initialized→Cancelled before the run, Working→Cancelled during it', async () => {
    const { clock, repo } = world();
    const hook = capturingHook();
    const registry = new WorkRegistry().register('long', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    const horae = await startHorae(horaeOn(clock, repo, registry, { statusHooks: hook }));
    const waiting = await horae.schedule({ workId: 'long', delayMs: 60_000 });
    const running = await horae.schedule({ workId: 'long' });
    await clock.advance(0);
    expect(await horae.cancel(waiting.taskId)).toBe(true);
    expect(await horae.cancel(running.taskId)).toBe(true);
    await clock.advance(0);
    await expect(running.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(hook.of(waiting.taskId)).toEqual(['null→Initialized', 'Initialized→Cancelled']);
    expect(hook.of(running.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Cancelled']);
    expect(await repo.getById(running.taskId)).toMatchObject({ state: 'Cancelled' });
  });

  it('an occurrence of a recurring schedule is reported created (null→Initialized) once, by the node that materialized it', async () => {
    const { clock, repo } = world();
    const hookA = capturingHook();
    const hookB = capturingHook();
    const registry = new WorkRegistry().register('w', () => 1);
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a', statusHooks: hookA }));
    await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b', statusHooks: hookB }));
    await a.schedule({ name: 's', workId: 'w', every: 5000 });
    for (let i = 0; i < 12; i++) await clock.advance(1000);
    const tasks = (await repo.list()).tasks;
    expect(tasks.length).toBeGreaterThanOrEqual(2);
    for (const task of tasks.filter((t) => t.state === 'Done')) {
      const all = [...hookA.of(task.id), ...hookB.of(task.id)];
      expect(all.filter((c) => c === 'null→Initialized')).toHaveLength(1);
      expect(all.filter((c) => c === 'Initialized→Working')).toHaveLength(1);
      expect(all.filter((c) => c === 'Working→Done')).toHaveLength(1);
    }
  });

  it('a hook that throws blocks nothing: the task ends Done, other hooks get every change, hook:error reports it', async () => {
    const { clock, repo } = world();
    const good = capturingHook();
    const broken = { onTransition: (_change: StatusChange): void => { throw new Error('hook down'); } };
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 'ok'), { statusHooks: [broken, good] }));
    const errors: unknown[] = [];
    horae.horaeEvents.on('hook:error', ({ error }) => errors.push(error));
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await expect(handle.result).resolves.toBe('ok');
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done' });
    expect(good.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Done']);
    expect(errors).toHaveLength(3);
  });

  it('a URL hook whose receiver is down never slows the task: it ends Done, and the outbox row becomes a dead letter', async () => {
    const { clock, repo } = world();
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    const horae = await startHorae(
      horaeOn(clock, repo, new WorkRegistry().register('w', () => 'ok'), { statusHooks: { url: 'http://127.0.0.1:9/hooks', secret: generateStatusHookSecret(), maxAttempts: 1 } }),
    );
    expect(horae.hookSenders).toHaveLength(0);
    const dead = nextEvent(horae.durableHooks!.events, 'hook:dead');
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await expect(handle.result).resolves.toBe('ok');
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done' });
    const event = await dead;
    expect(event).toMatchObject({ taskId: handle.taskId, attempts: 1 });
  });
});

describe('status hooks bridge with two nodes', () => {
  it('a cancel written on B of a task running on A is reported once, by A (Working→Cancelled); B reports nothing', async () => {
    const { clock, repo } = world();
    const hookA = capturingHook();
    const hookB = capturingHook();
    const registry = new WorkRegistry().register('long', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a', statusHooks: hookA }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b', statusHooks: hookB, syncIntervalMs: 60_000 }));
    const cancelsOnB: unknown[] = [];
    b.events.on('task:cancelled', (event) => void cancelsOnB.push(event));
    const handle = await a.schedule({ workId: 'long' });
    await clock.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Working', lease: { owner: 'a' } });
    expect(await b.cancel(handle.taskId)).toBe(true);
    await clock.advance(1000); // A's sync sees the cancel and aborts its run
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(hookA.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Cancelled']);
    // B wrote it, but the task ran on A: its attempt record says so, and A reports it.
    expect(hookB.of(handle.taskId)).toEqual([]);
    expect(cancelsOnB).toEqual([expect.objectContaining({ taskId: handle.taskId, origin: 'local', reporter: false })]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Cancelled' });
  });
});

describe('status hooks: each cancel and each reclaim is reported once', () => {
  it('a lease reclaimed from a dead node: the node that reclaimed it reports Working→Initialized, or Working→Failed with attempts spent', async () => {
    const { clock, repo } = world();
    const hookA = capturingHook();
    const hookB = capturingHook();
    const registry = new WorkRegistry().register('w', () => 'ok');
    // A node that claimed two tasks and died: its leases expire and are never renewed.
    const dead = repo.openPeer();
    const retryable = (await dead.insert({ workId: 'w', scheduledAt: new Date(clock.now()), maxAttempts: 2 })).task;
    const spent = (await dead.insert({ workId: 'w', scheduledAt: new Date(clock.now()), maxAttempts: 1 })).task;
    await dead.claim(retryable.id, { owner: 'dead', leaseMs: 5000 });
    await dead.claim(spent.id, { owner: 'dead', leaseMs: 5000 });
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a', statusHooks: hookA, leaseMs: 5000 }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b', statusHooks: hookB, leaseMs: 5000 }));
    const reclaims: Array<{ taskId: string; state: string; nodeId: string }> = [];
    for (const node of [a, b]) node.events.on('task:reclaimed', ({ task, nodeId }) => void reclaims.push({ taskId: task.id, state: task.state, nodeId }));
    await clock.advance(7000);
    expect(reclaims.map((r) => [r.taskId, r.state]).sort()).toEqual([[retryable.id, 'Initialized'], [spent.id, 'Failed']].sort());
    const of = (taskId: string): string[] => [...hookA.of(taskId), ...hookB.of(taskId)];
    // Reported by the reclaiming node only; the re-run is then reported by whichever node ran it.
    expect(of(retryable.id).filter((c) => c === 'Working→Initialized')).toHaveLength(1);
    expect(of(retryable.id)).toContain('Working→Done');
    expect(of(spent.id)).toEqual(['Working→Failed']);
    const failed = [...hookA.changes, ...hookB.changes].find((c) => c.taskId === spent.id)!;
    expect(failed).toMatchObject({ from: 'Working', to: 'Failed', workId: 'w', attempt: 1 });
    const reporter = reclaims.find((r) => r.taskId === spent.id)!.nodeId;
    expect((reporter === 'a' ? hookA : hookB).of(spent.id)).toEqual(['Working→Failed']);
    expect(await repo.getById(retryable.id)).toMatchObject({ state: 'Done', attempt: 2 });
  });

  it('a cancel of a waiting task written on B: B reports Initialized→Cancelled; A, which held a timer of it, reports nothing', async () => {
    const { clock, repo } = world();
    const hookA = capturingHook();
    const hookB = capturingHook();
    const registry = new WorkRegistry().register('w', () => 'ok');
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a', statusHooks: hookA }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b', statusHooks: hookB }));
    const cancelsOnA: unknown[] = [];
    a.events.on('task:cancelled', (event) => void cancelsOnA.push(event));
    const handle = await a.schedule({ workId: 'w', delayMs: 60_000 });
    await clock.advance(1000); // B's sync restores it: both nodes hold a timer
    expect(await b.cancel(handle.taskId)).toBe(true);
    await clock.advance(1000); // A's sync sees the cancel
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(hookB.of(handle.taskId)).toEqual(['Initialized→Cancelled']);
    expect(hookA.of(handle.taskId)).toEqual(['null→Initialized']);
    expect(cancelsOnA).toEqual([expect.objectContaining({ origin: 'sync', reporter: false })]);
  });

  it('an operator cancels a running task in the repository: the node that ran it reports Working→Cancelled once', async () => {
    const { clock, repo } = world();
    const hookA = capturingHook();
    const hookB = capturingHook();
    const registry = new WorkRegistry().register('long', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a', statusHooks: hookA }));
    await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b', statusHooks: hookB }));
    const handle = await a.schedule({ workId: 'long' });
    await clock.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Working', lease: { owner: 'a' } });
    await repo.openPeer().markAsCancelled(handle.taskId, { reason: 'operator' });
    await clock.advance(1000);
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(hookA.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Cancelled']);
    expect(hookB.of(handle.taskId).filter((c) => c.endsWith('Cancelled'))).toEqual([]);
  });

  it('single node: an operator cancels a waiting task in the repository; the node reports Initialized→Cancelled', async () => {
    const { clock, repo } = world();
    const hook = capturingHook();
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 'ok'), { statusHooks: hook }));
    expect(horae.mode).toBe('single-node');
    const handle = await horae.schedule({ workId: 'w', delayMs: 60_000 });
    await repo.openPeer().markAsCancelled(handle.taskId);
    await clock.advance(1000);
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(hook.of(handle.taskId)).toEqual(['null→Initialized', 'Initialized→Cancelled']);
  });
});
