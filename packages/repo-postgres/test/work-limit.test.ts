import type { Repository, WorkLimiter } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { createPgFixture } from './pg-fixture.js';

type Fixture = Awaited<ReturnType<typeof createPgFixture>>;

let fixture: Fixture | undefined;
afterEach(async () => {
  await fixture?.dispose();
  fixture = undefined;
});

/** Twenty clients with one connection each: every claim of a round runs on its own connection, at once. */
async function twentyClients(): Promise<Array<Repository & WorkLimiter>> {
  fixture = await createPgFixture({ poolSize: 1 });
  const clients: Repository[] = [fixture.repository];
  for (let i = 1; i < 20; i++) clients.push(await fixture.openPeer());
  return clients as Array<Repository & WorkLimiter>;
}

describe('PostgresRepository work limits under concurrency', () => {
  it('20 clients racing claimWithinLimit over 20 tasks with limit 3: exactly 3 Working, round after round', async () => {
    const clients = await twentyClients();
    const repo = clients[0]!;
    const past = new Date(Date.now() - 60_000);
    for (let round = 0; round < 3; round++) {
      const workId = `encode-${round}`;
      const inserted = await repo.insertMany(Array.from({ length: 20 }, (_, i) => ({ workId, scheduledAt: past, param: { i } })));
      const results = await Promise.all(
        inserted.map(({ task }, i) => clients[i]!.claimWithinLimit(task.id, { owner: `node-${i}`, leaseMs: 60_000, maxWorking: 3 })),
      );
      expect(results.filter((result) => result !== null && 'task' in result), `round ${round}`).toHaveLength(3);
      expect(results.filter((result) => result !== null && 'refused' in result), `round ${round}`).toHaveLength(17);
      expect((await repo.list({ state: 'Working', workId, limit: 100 })).tasks).toHaveLength(3);
    }
  });

  it('20 clients racing claimDueWithinLimits with limit 3 claim 3 tasks in all', async () => {
    const clients = await twentyClients();
    const repo = clients[0]!;
    await repo.insertMany(Array.from({ length: 20 }, (_, i) => ({ workId: 'encode', scheduledAt: new Date(Date.now() - 60_000), param: { i } })));
    const results = await Promise.all(clients.map((client, i) => client.claimDueWithinLimits({ owner: `node-${i}`, leaseMs: 60_000, limit: 5, workLimits: { encode: 3 } })));
    const ids = results.flat().map((task) => task.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(3);
    expect((await repo.countByState()).Working).toBe(3);
  });
});
