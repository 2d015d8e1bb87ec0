import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@horae/core/testing';
import type { NewTask, TaskInfo } from '@horae/storage';
import { SqliteRepository } from '@horae/repo-sqlite';
import { STATEMENT_SQL } from '../src/statements.js';
import { driverSlice } from './driver-slice.js';

const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

/** A small deterministic generator (mulberry32), so that a failure replays. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The contract's claim order, written from its text: effective priority `priority + waitedMs / agingMs` descending
 * (compared as `priority × agingMs + waitedMs`, exact for these integer inputs), then earliest due, then oldest, then id.
 */
function contractOrder(tasks: readonly TaskInfo[], now: number, agingMs: number): string[] {
  const effective = (task: TaskInfo): number => (agingMs === Number.POSITIVE_INFINITY ? task.priority : task.priority * agingMs + (now - task.scheduledAt.getTime()));
  return tasks
    .filter((task) => task.scheduledAt.getTime() <= now)
    .sort(
      (a, b) =>
        effective(b) - effective(a) ||
        a.scheduledAt.getTime() - b.scheduledAt.getTime() ||
        a.createdAt.getTime() - b.createdAt.getTime() ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    )
    .map((task) => task.id);
}

describe('the claim order of claimDue, by every path', () => {
  let clock: VirtualClock;
  let repository: SqliteRepository;
  let inserted: TaskInfo[];
  beforeEach(async () => {
    clock = new VirtualClock({ now: T0 });
    repository = new SqliteRepository({ database: ':memory:', clock });
    // 240 tasks over six priority levels (negative and fractional ones too), due over the last two hours or within the
    // next ten minutes, inserted in four batches a second apart (so createdAt differs), with deliberate ties: due times
    // on whole minutes, so that aged keys of different levels meet exactly.
    const next = random(42);
    const priorities = [-2, 0, 0.5, 1, 3, 7];
    inserted = [];
    for (let batch = 0; batch < 4; batch++) {
      const tasks: NewTask[] = Array.from({ length: 60 }, (_, i) => {
        const wholeMinute = next() < 0.3;
        const offset = wholeMinute ? Math.floor(next() * 130 - 120) * MINUTE : Math.floor(next() * 130 * MINUTE) - 120 * MINUTE;
        return { id: `t-${batch}-${String(i).padStart(2, '0')}`, workId: i % 3 === 0 ? 'x' : 'y', priority: priorities[Math.floor(next() * priorities.length)]!, scheduledAt: new Date(T0 + offset) };
      });
      inserted.push(...(await repository.insertMany(tasks)).map((result) => result.task));
      clock.jump(1_000);
    }
  });
  afterEach(() => repository.close());

  // 10 s is the default, served by the aged index; the others merge the priority levels of the claim index.
  it.each([10_000, MINUTE, 1_000, 1, Number.POSITIVE_INFINITY])('agingMs %s: batches of claimDue hand out the due tasks in the contract order', async (agingMs) => {
    const expected = contractOrder(inserted, clock.now(), agingMs);
    expect(expected.length).toBeGreaterThan(150);
    const order: string[] = [];
    for (;;) {
      const batch = await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 7, agingMs });
      if (batch.length === 0) break;
      order.push(...batch.map((task) => task.id));
    }
    expect(order).toEqual(expected);
  });

  it.each([10_000, MINUTE, Number.POSITIVE_INFINITY])('agingMs %s: claimDue of some works and claimDueWithinLimits keep the same order', async (agingMs) => {
    const expected = contractOrder(
      inserted.filter((task) => task.workId === 'x'),
      clock.now(),
      agingMs,
    );
    const ofWork = await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 500, agingMs, workIds: ['x'] });
    expect(ofWork.map((task) => task.id)).toEqual(expected);
    // The other work under a limit that never binds: the same order as claimDue.
    const limited: string[] = [];
    for (;;) {
      const batch = await repository.claimDueWithinLimits({ owner: 'n', leaseMs: MINUTE, limit: 9, agingMs, workLimits: { y: 1_000 } });
      if (batch.length === 0) break;
      limited.push(...batch.map((task) => task.id));
    }
    expect(limited).toEqual(
      contractOrder(
        inserted.filter((task) => task.workId === 'y'),
        clock.now(),
        agingMs,
      ),
    );
  });
});

describe('exact ties of aged priorities', () => {
  it.each([10_000, MINUTE])('agingMs %s: a tie across levels goes to the earlier due time, one task a claim', async (agingMs) => {
    const clock = new VirtualClock({ now: T0 });
    const repository = new SqliteRepository({ database: ':memory:', clock });
    try {
      // Priority p due p × agingMs later than priority 0: all three effective priorities are equal. Inserted latest due
      // first, so that neither the insert order nor the id can fake the order.
      const base = T0 - 10 * MINUTE;
      for (const p of [2, 1, 0]) await repository.insert({ id: `p${p}`, workId: 'w', priority: p, scheduledAt: new Date(base + (p - 2) * agingMs) });
      const order: string[] = [];
      for (let i = 0; i < 3; i++) order.push(...(await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 1, agingMs })).map((task) => task.id));
      expect(order).toEqual(['p0', 'p1', 'p2']);
    } finally {
      await repository.close();
    }
  });
});

describe('the merge of priority levels reads only the levels that can place a task', () => {
  let db: Database.Database;
  let levelReads: number;
  let repository: SqliteRepository;
  let clock: VirtualClock;
  beforeEach(async () => {
    db = new Database(':memory:');
    levelReads = 0;
    const counted = new Set<string>([STATEMENT_SQL.selectDue, STATEMENT_SQL.selectDueFiltered]);
    const slice = driverSlice(db, (source, statement) => {
      if (!counted.has(source)) return statement;
      return {
        run: (...params) => statement.run(...params),
        get: (...params) => statement.get(...params),
        all: (...params) => {
          levelReads++;
          return statement.all(...params);
        },
      };
    });
    clock = new VirtualClock({ now: T0 });
    repository = new SqliteRepository({ database: slice, clock });
    // 40 levels, one task each, all due one second ago.
    await repository.insertMany(Array.from({ length: 40 }, (_, i) => ({ id: `p${String(i).padStart(2, '0')}`, workId: 'w', priority: i, scheduledAt: new Date(T0 - 1_000) })));
  });
  afterEach(async () => {
    await repository.close();
    db.close();
  });

  it('stops after the top level when no lower one can age past it', async () => {
    expect((await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 1, agingMs: MINUTE })).map((task) => task.id)).toEqual(['p39']);
    expect(levelReads).toBe(1);
    levelReads = 0;
    expect((await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 2, agingMs: Number.POSITIVE_INFINITY })).map((task) => task.id)).toEqual(['p38', 'p37']);
    expect(levelReads).toBe(2);
  });

  it('reads down to the lowest level when a task there waited long enough to come first', async () => {
    // Priority 0, due 2 hours ago: at a point a minute it has aged 120 points, past every other level.
    await repository.insert({ id: 'old', workId: 'w', priority: 0, scheduledAt: new Date(T0 - 120 * MINUTE) });
    expect((await repository.claimDue({ owner: 'n', leaseMs: MINUTE, limit: 2, agingMs: MINUTE })).map((task) => task.id)).toEqual(['old', 'p39']);
    expect(levelReads).toBe(40);
  });
});
