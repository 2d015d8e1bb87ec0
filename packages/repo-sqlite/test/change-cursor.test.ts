import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@horae/core/testing';
import type { Repository, TaskInfo } from '@horae/storage';
import { createFileFixture } from './temp-database.js';
import type { RepositoryFixture } from '@horae/storage/testing';

const DUE = new Date(Date.UTC(2020, 0, 1));

async function drain(repository: Repository, cursor: string | null): Promise<{ tasks: TaskInfo[]; cursor: string }> {
  const tasks: TaskInfo[] = [];
  let current = cursor;
  for (;;) {
    const page = await repository.getUpdatedSince(current, 2);
    if (page.tasks.length === 0) return { tasks, cursor: page.cursor };
    tasks.push(...page.tasks);
    current = page.cursor;
  }
}

describe('the change cursor', () => {
  let fixture: RepositoryFixture;
  // A clock that never moves: every change shares one timestamp, so only change_seq can order them.
  const clock = new VirtualClock({ now: DUE });
  beforeEach(async () => {
    fixture = await createFileFixture({ clock });
  });
  afterEach(() => fixture.dispose());

  it('keeps counting after the row with the last change is deleted', async () => {
    const repository = fixture.repository;
    const { task } = await repository.insert({ workId: 'w', scheduledAt: DUE });
    const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 1000 });
    await repository.markAsDone(task.id, claimed!.lease!.token);
    const seen = await drain(repository, null);
    expect(seen.tasks.map((t) => t.state)).toEqual(['Done']);
    expect(await repository.deleteTerminalBefore(new Date(DUE.getTime() + 1))).toBe(1);
    // A counter derived from max(change_seq) would hand the next insert the number the reader already holds.
    const { task: next } = await repository.insert({ workId: 'w', scheduledAt: DUE });
    const after = await drain(repository, seen.cursor);
    expect(after.tasks.map((t) => t.id)).toEqual([next.id]);
  });

  it('orders interleaved writes of two connections by commit, at one timestamp, while a reader pages', async () => {
    const a = fixture.repository;
    const b = await fixture.openPeer();
    const reader = await fixture.openPeer();
    let cursor: string | null = null;
    const latest = new Map<string, TaskInfo>();
    for (let round = 0; round < 5; round++) {
      const inserted = await Promise.all([
        a.insert({ workId: 'w', scheduledAt: DUE, param: `a${round}` }),
        b.insert({ workId: 'w', scheduledAt: DUE, param: `b${round}` }),
      ]);
      // Change an older task again between pages: it must come back in its latest state.
      await b.update(inserted[0].task.id, { priority: round + 1 });
      const page = await reader.getUpdatedSince(cursor, 1);
      for (const task of page.tasks) latest.set(task.id, task);
      cursor = page.cursor;
    }
    for (const task of (await drain(reader, cursor)).tasks) latest.set(task.id, task);
    expect(latest.size).toBe(10);
    for (const task of (await a.list({ limit: 100 })).tasks) expect(latest.get(task.id)).toEqual(task);
  });
});
