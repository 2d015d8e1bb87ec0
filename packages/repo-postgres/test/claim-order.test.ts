import { randomUUID } from 'node:crypto';
import type { TaskInfo } from '@horae/storage';
import type { PostgresRepository } from '@horae/repo-postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { createPgFixture } from './pg-fixture.js';

type Fixture = Awaited<ReturnType<typeof createPgFixture>>;

let fixture: Fixture | undefined;
afterEach(async () => {
  await fixture?.dispose();
  fixture = undefined;
});

/**
 * The contract's claim order, as the reference MemoryRepository computes it: aged priority `priority × agingMs −
 * scheduledAt` (priority alone for Infinity) highest first, then earliest due, then oldest, then id by code point.
 */
function contractOrder(agingMs: number): (a: TaskInfo, b: TaskInfo) => number {
  const aged = agingMs === Number.POSITIVE_INFINITY ? (t: TaskInfo): number => t.priority : (t: TaskInfo): number => t.priority * agingMs - t.scheduledAt.getTime();
  const text = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return (a, b) => aged(b) - aged(a) || a.scheduledAt.getTime() - b.scheduledAt.getTime() || a.createdAt.getTime() - b.createdAt.getTime() || text(a.id, b.id);
}

/** A deterministic pseudo-random sequence (a test that fails can be replayed). */
function sequence(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

/**
 * 60 due tasks of one work, inserted in three statements (each statement's tasks share a createdAt): priorities among
 * a few levels, due times on a 10 s grid over the last hour, so that aged keys tie exactly across levels and due
 * times tie within them, and the later tie-breaks (createdAt, id) decide.
 */
async function backlog(seed: number): Promise<{ workId: string; tasks: TaskInfo[] }> {
  const repo = fixture!.repository;
  const random = sequence(seed);
  const workId = `order-${randomUUID()}`;
  const base = Math.floor(Date.now() / 10_000) * 10_000 - 60 * 60_000;
  const tasks: TaskInfo[] = [];
  for (let batch = 0; batch < 3; batch++) {
    const inserted = await repo.insertMany(
      Array.from({ length: 20 }, () => ({
        workId,
        priority: [0, 1, 2, 3, -1, 0.5][Math.floor(random() * 6)]!,
        scheduledAt: new Date(base + Math.floor(random() * 40) * 10_000),
      })),
    );
    tasks.push(...inserted.map((r) => r.task));
  }
  return { workId, tasks };
}

describe('PostgresRepository: the claim order is the contract formula, on every aging path', () => {
  for (const [n, agingMs] of [undefined, Number.POSITIVE_INFINITY, 60_000, 3_333, 0.5].entries()) {
    const name = agingMs === undefined ? 'the default agingMs (the index tasks_aged)' : `agingMs ${agingMs}`;

    it(`claimDue with ${name} hands out a backlog in the contract's order, batch after batch`, async () => {
      fixture = await createPgFixture();
      const repo = fixture.repository;
      const { workId, tasks } = await backlog(2 * n + 1);
      const claimed: TaskInfo[] = [];
      for (;;) {
        const batch = await repo.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 7, workIds: [workId], ...(agingMs === undefined ? {} : { agingMs }) });
        if (batch.length === 0) break;
        claimed.push(...batch);
      }
      const expected = [...tasks].sort(contractOrder(agingMs ?? 10_000)).map((t) => t.id);
      expect(claimed.map((t) => t.id)).toEqual(expected);
    });

    it(`claimDueWithinLimits with ${name} claims in the same order`, async () => {
      fixture = await createPgFixture();
      const repo = fixture.repository as PostgresRepository;
      const { workId, tasks } = await backlog(2 * n + 2);
      const claimed: TaskInfo[] = [];
      for (;;) {
        const batch = await repo.claimDueWithinLimits({
          owner: 'node-a',
          leaseMs: 60_000,
          limit: 9,
          workLimits: { [workId]: 1_000 },
          ...(agingMs === undefined ? {} : { agingMs }),
        });
        if (batch.length === 0) break;
        claimed.push(...batch);
      }
      expect(claimed.map((t) => t.id)).toEqual([...tasks].sort(contractOrder(agingMs ?? 10_000)).map((t) => t.id));
    });
  }

  it('a priority too large to multiply by agingMs still claims (the index clamps it to ±1e300), highest first', async () => {
    fixture = await createPgFixture();
    const repo = fixture.repository;
    const past = new Date(Date.now() - 60_000);
    const [huge, negative, plain] = (
      await repo.insertMany([
        { workId: 'w', priority: 1e308, scheduledAt: past },
        { workId: 'w', priority: -1e308, scheduledAt: past },
        { workId: 'w', priority: 5, scheduledAt: past },
      ])
    ).map((r) => r.task);
    for (const agingMs of [undefined, 1e300]) {
      const claimed = await repo.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 3, ...(agingMs === undefined ? {} : { agingMs }) });
      expect(claimed.map((t) => t.id)).toEqual([huge!.id, plain!.id, negative!.id]);
      for (const task of claimed) await repo.release(task.id, task.lease!.token, { runAt: past });
    }
  });
});
