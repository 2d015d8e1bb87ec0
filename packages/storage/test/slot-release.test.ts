import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, WorkRegistry, type TaskInfo } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { deferred, startNode, type Deferred } from './storage-helpers.js';

/** A repository whose Done writes wait for a gate: the round trip of a database, held open by the test. */
class SlowDoneRepository extends MemoryRepository {
  gate: Deferred<void> | undefined;
  readonly doneCalls: string[] = [];

  override async markAsDone(id: string, token: string): Promise<TaskInfo> {
    this.doneCalls.push(id);
    await this.gate?.promise;
    return super.markAsDone(id, token);
  }
}

function setUp(): { clock: VirtualClock; repo: SlowDoneRepository } {
  const clock = new VirtualClock();
  return { clock, repo: new SlowDoneRepository({ clock }) };
}

describe('a run gives its slot back before its Done write lands', () => {
  it('with concurrency 1, the next task starts while the first Done is in flight; the first handle waits for it', async () => {
    const { clock, repo } = setUp();
    const started: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void started.push(ctx.taskId));
    const node = await startNode(repo, registry, clock, { concurrency: 1 });
    repo.gate = deferred();
    const first = await node.scheduler.schedule({ workId: 'w', taskId: 'first' });
    const second = await node.scheduler.schedule({ workId: 'w', taskId: 'second' });
    await clock.advance(0);

    expect(started).toEqual(['first', 'second']);
    expect(repo.doneCalls).toEqual(['first', 'second']);
    // The row stays Working under this node's lease, and the handle says running, until the write lands.
    expect((await repo.getById('first')).state).toBe('Working');
    expect(first.state).toBe('running');
    expect(node.events.some(([name]) => name === 'task:succeeded')).toBe(false);

    repo.gate.resolve();
    await expect(first.result).resolves.toBeUndefined();
    await expect(second.result).resolves.toBeUndefined();
    expect(first.state).toBe('done');
    expect((await repo.getById('first')).state).toBe('Done');
    expect(node.events.filter(([name]) => name === 'task:succeeded')).toHaveLength(2);
  });

  it('at most `concurrency` Done writes are in flight: beyond that a run keeps its slot until its Done lands', async () => {
    const { clock, repo } = setUp();
    const started: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void started.push(ctx.taskId));
    const node = await startNode(repo, registry, clock, { concurrency: 1 });
    repo.gate = deferred();
    for (const id of ['a', 'b', 'c']) await node.scheduler.schedule({ workId: 'w', taskId: id });
    await clock.advance(0);
    await clock.advance(0);
    // a gave its slot back with its Done in flight; b could not (one Done in flight already), so c waits.
    expect(started).toEqual(['a', 'b']);
    expect(repo.doneCalls).toEqual(['a', 'b']);
    expect(await repo.countByState()).toMatchObject({ Working: 2, Initialized: 1 });
    repo.gate.resolve();
    for (let i = 0; i < 5; i++) await clock.advance(0);
    expect(started).toEqual(['a', 'b', 'c']);
    expect((await repo.countByState()).Done).toBe(3);
  });

  it('storage.stop() waits for a Done write still in flight', async () => {
    const { clock, repo } = setUp();
    const registry = new WorkRegistry().register('w', () => 'ok');
    const node = await startNode(repo, registry, clock);
    repo.gate = deferred();
    const handle = await node.scheduler.schedule({ workId: 'w', taskId: 't' });
    await clock.advance(0);
    await node.scheduler.stop();
    let stopped = false;
    const stopping = node.storage.stop().then(() => (stopped = true));
    await clock.advance(10);
    expect(stopped).toBe(false);
    repo.gate.resolve();
    await stopping;
    expect((await repo.getById('t')).state).toBe('Done');
    await expect(handle.result).resolves.toBe('ok');
  });

  it('a Done refused because the lease was lost discards the result, as when the slot was held', async () => {
    const { clock, repo } = setUp();
    const registry = new WorkRegistry().register('w', () => 'ok');
    const node = await startNode(repo, registry, clock, { leaseMs: 3000 });
    repo.gate = deferred();
    const handle = await node.scheduler.schedule({ workId: 'w', taskId: 't' });
    await clock.advance(0);
    // While the Done write hangs, an operator cancels the task: the write is then refused.
    await repo.markAsCancelled('t', { reason: 'operator' });
    repo.gate.resolve();
    await clock.advance(0);
    expect((await repo.getById('t')).state).toBe('Cancelled');
    expect(node.events.some(([name]) => name === 'task:succeeded')).toBe(false);
    expect(node.events.some(([name]) => name === 'task:lease-lost')).toBe(true);
    await clock.advance(10_000); // sync reads the cancel and settles the handle
    await expect(handle.result).rejects.toThrow(/cancel/i);
  });

  it('a work with a cross-node concurrency keeps its slot until Done lands', async () => {
    const { clock, repo } = setUp();
    const started: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void started.push(ctx.taskId), { concurrency: 1 });
    const node = await startNode(repo, registry, clock, { concurrency: 4 });
    repo.gate = deferred();
    await node.scheduler.schedule({ workId: 'w', taskId: 'first' });
    await node.scheduler.schedule({ workId: 'w', taskId: 'second' });
    await clock.advance(0);
    expect(started).toEqual(['first']);
    repo.gate.resolve();
    await clock.advance(0);
    await clock.advance(0);
    expect(started).toEqual(['first', 'second']);
  });
});
