import type { WorkContext } from '@horae/core';
import { WorkRegistry, type Horae } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { horaeOn, stopAll, world } from './horae-helpers.js';

const started: Horae[] = [];
afterEach(async () => {
  await stopAll(started.splice(0));
});

/** One start of a work: what ran, and when, in ms since the test's start. */
interface Start {
  label: string;
  atMs: number;
}

/** A work that records its start under `label` and then takes one second of the scheduler's clock. */
function oneSecond(starts: Start[], t0: number, label: (ctx: WorkContext) => string) {
  return (ctx: WorkContext): Promise<void> => {
    starts.push({ label: label(ctx), atMs: ctx.clock!.now() - t0 });
    return new Promise((resolve) => void ctx.clock!.setTimer(resolve, 1000));
  };
}

// Issue 9: the backlog claimer is a generator of the core's pool, and it competed with users' generators on
// priority. A 'high' generator took the free slots (and, while a batch claim was under way, the slots that claim was
// for), so tasks overdue at a restart waited behind its items: with no claims ahead, until all 40 had started
// (~20 s). The guide promises that a due task waiting for a slot gets it before a generator is pulled.
describe('tasks overdue at start run before the items of a user generator', () => {
  it.each([
    { claimAhead: undefined, what: 'with the default claims ahead' },
    { claimAhead: 0, what: 'with no claims ahead (every claim through a pull of the pool)' },
  ])('a high-priority generator of 40 items at concurrency 2 waits for 8 overdue tasks, $what', async ({ claimAhead }) => {
    const { clock, repo } = world();
    const t0 = clock.now();
    const overdue = Array.from({ length: 8 }, (_, i) => ({ id: `due-${i}`, workId: 'due', scheduledAt: new Date(t0 - 60_000) }));
    await repo.insertMany(overdue);
    const starts: Start[] = [];
    const registry = new WorkRegistry()
      .register('due', oneSecond(starts, t0, (ctx) => ctx.taskId))
      .register('gen', oneSecond(starts, t0, (ctx) => `gen-${(ctx.param as { i: number }).i}`));
    const horae = horaeOn(clock, repo, registry, { concurrency: 2, ...(claimAhead === undefined ? {} : { claimAhead }) });
    started.push(horae);
    await horae.start();
    // The producer adds its generator after start(), as the guide says.
    const items = Array.from({ length: 40 }, (_, i) => ({ workId: 'gen', param: { i } }));
    horae.scheduler.addGenerator(items, { priority: 'high', name: 'user-high' });

    for (let elapsed = 0; elapsed < 30_000 && starts.length < 48; elapsed += 100) await clock.advance(100);

    const labels = starts.map((start) => start.label);
    expect(labels).toHaveLength(48);
    // Every overdue task starts before the first generator item, two at a time from the start: by 3 s, not ~21 s.
    expect(labels.slice(0, 8).sort()).toEqual(overdue.map((task) => task.id).sort());
    expect(labels.slice(8)).toEqual(items.map((item) => `gen-${item.param.i}`));
    expect(Math.max(...starts.slice(0, 8).map((start) => start.atMs))).toBe(3000);
  });
});
