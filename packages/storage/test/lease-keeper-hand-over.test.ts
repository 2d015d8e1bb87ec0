import { VirtualClock } from '@horae/core/testing';
import { LeaseKeeper, LeaseLostError, MemoryRepository, type TaskInfo } from '@horae/storage';
import { describe, expect, it } from 'vitest';

// The run of a batch claim takes over the claim's keeper (storage's #takeBacklogClaim → #run): the keeper keeps
// renewing across the hand-over, and a loss goes to whoever holds it when it is found, or to the new owner at once
// when it was found before.
describe('LeaseKeeper.handOver', () => {
  async function claimed(): Promise<{ clock: VirtualClock; repo: MemoryRepository; task: TaskInfo }> {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now()) });
    const held = await repo.claim(task.id, { owner: 'me', leaseMs: 3000 });
    return { clock, repo, task: held! };
  }

  it('keeps renewing on the same timer, and reports a later loss to the new owner only', async () => {
    const { clock, repo, task } = await claimed();
    const first: LeaseLostError[] = [];
    const second: LeaseLostError[] = [];
    const keeper = new LeaseKeeper({ repository: repo, clock, taskId: task.id, token: task.lease!.token, leaseMs: 3000, onLost: (e) => first.push(e) });
    keeper.start();
    await clock.advance(500);
    keeper.handOver((e) => second.push(e));
    // The first renewal stays timed from the start (a third of the lease), not from the hand-over.
    await clock.advance(500);
    expect((await repo.getById(task.id)).lease!.until.getTime()).toBe(clock.now() + 3000);
    await repo.markAsCancelled(task.id);
    await clock.advance(1000);
    expect(first).toEqual([]);
    expect(second).toHaveLength(1);
    expect(second[0]).toBeInstanceOf(LeaseLostError);
    await clock.advance(10_000);
    expect(second).toHaveLength(1);
  });

  it('reports a loss found before the hand-over to the new owner at once', async () => {
    const { clock, repo, task } = await claimed();
    const first: LeaseLostError[] = [];
    const keeper = new LeaseKeeper({ repository: repo, clock, taskId: task.id, token: task.lease!.token, leaseMs: 3000, onLost: (e) => first.push(e) });
    keeper.start();
    await repo.markAsCancelled(task.id);
    await clock.advance(1000);
    expect(first).toHaveLength(1);
    const second: LeaseLostError[] = [];
    keeper.handOver((e) => second.push(e));
    expect(second).toEqual([first[0]]);
    await clock.advance(10_000);
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(1);
  });
});
