import { occurrenceKey } from '@horae/core';
import { WorkRegistry, occurrenceTaskId, type TaskInfo } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanups, downtime, eventWhere, startNode, tempDatabase } from './helpers.js';

// Recurring schedules on a real SQLite file, two Horae nodes in one process (two connections), real clock.

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const PERIOD = 200;
const NODE_OPTIONS = { syncIntervalMs: 50, scheduleTickMs: 50, scheduleGraceMs: 100 } as const;

describe('feature: a recurring schedule on two nodes (SQLite)', () => {
  it('every 200 ms for ~1.2 s: each occurrence runs exactly once; after a restart it continues, running one missed occurrence (catchUp once)', async () => {
    const db = tempDatabase(cleanups);
    const runs = new Map<string, string[]>();
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register('beat', (ctx) => {
        runs.set(ctx.taskId, [...(runs.get(ctx.taskId) ?? []), node]);
      });
    const a = await startNode(db, registry('a'), cleanups, { ...NODE_OPTIONS, nodeId: 'a' });
    const b = await startNode(db, registry('b'), cleanups, { ...NODE_OPTIONS, nodeId: 'b' });
    // Both nodes register the schedule at start, as an application does: one row.
    await a.schedule({ name: 'beat', workId: 'beat', every: PERIOD, catchUp: 'once' });
    await b.schedule({ name: 'beat', workId: 'beat', every: PERIOD, catchUp: 'once' });
    expect(await a.schedules.list()).toHaveLength(1);

    // ~1.2 s: wait for the sixth occurrence to succeed, on either node.
    let succeeded = 0;
    await eventWhere([a.events, b.events], 'task:succeeded', ({ task }) => task.scheduleName === 'beat' && ++succeeded >= 6, 5000);
    await a.stop();
    await b.stop();

    const repo = db.open();
    const before = (await repo.list({ limit: 1000 })).tasks.filter((t) => t.scheduleName === 'beat');
    expect(before.length).toBeGreaterThanOrEqual(6);
    const times = before.map((t) => t.scheduledAt.getTime()).sort((x, y) => x - y);
    // One task per occurrence, under its deterministic id and uniqueKey, on the schedule's grid.
    expect(new Set(times).size).toBe(before.length);
    for (const task of before) {
      expect(task.id).toBe(occurrenceTaskId('beat', task.scheduledAt));
      expect(task.uniqueKey).toBe(occurrenceKey('beat', task.scheduledAt));
      expect(task.kind).toBe('periodic');
      expect(task.scheduledAt.getTime() % PERIOD).toBe(0);
    }
    // Exactly once: every Done occurrence ran once, on one node; nothing ran twice; no run of a stopped node is lost.
    for (const task of before) {
      expect(task.state === 'Done' || task.state === 'Initialized').toBe(true);
      if (task.state === 'Done') expect(runs.get(task.id)).toHaveLength(1);
    }
    expect([...runs.values()].every((nodes) => nodes.length === 1)).toBe(true);
    const last = times[times.length - 1]!;

    // Downtime: several occurrences are missed. Then a new node starts on the same file.
    await downtime(4 * PERIOD);
    const restartedAt = Date.now();
    const c = await startNode(db, registry('c'), cleanups, { ...NODE_OPTIONS, nodeId: 'c' });
    const caughtUp = await eventWhere([c.events], 'task:succeeded', ({ task }) => task.scheduleName === 'beat' && task.scheduledAt.getTime() > last, 5000);
    // catchUp 'once': the latest missed occurrence runs, the older missed ones are skipped (no task at all).
    const caughtUpAt = caughtUp.task.scheduledAt.getTime();
    expect(caughtUpAt).toBeLessThanOrEqual(restartedAt + PERIOD);
    expect(caughtUpAt - last).toBeGreaterThanOrEqual(3 * PERIOD);
    const afterRestart = (await repo.list({ limit: 1000 })).tasks.filter((t: TaskInfo) => t.scheduleName === 'beat' && t.scheduledAt.getTime() > last);
    expect(afterRestart.filter((t) => t.scheduledAt.getTime() < caughtUpAt)).toEqual([]);
    // And it goes on from there, on the grid.
    const next = await eventWhere([c.events], 'task:succeeded', ({ task }) => task.scheduleName === 'beat' && task.scheduledAt.getTime() > caughtUpAt, 5000);
    expect(next.task.scheduledAt.getTime() % PERIOD).toBe(0);
    expect(runs.get(next.task.id)).toEqual(['c']);
    expect([...runs.values()].every((nodes) => nodes.length === 1)).toBe(true);
  }, 20_000);
});
