import { MemoryRepository, type Repository } from '@horae/storage';
import type { RepositoryFixture } from '@horae/storage/testing';
import { describe, expect, it } from 'vitest';
import { runRepositoryModel } from '../src/testing/model/run-repository-model.js';

/** A repository whose methods named in `overrides` are replaced, the others those of `repository`. */
function overriding(repository: Repository, overrides: Readonly<Record<string, unknown>>): Repository {
  return new Proxy(repository, {
    get: (target, property) => {
      if (typeof property === 'string' && property in overrides) return overrides[property];
      const value = (target as unknown as Record<string | symbol, unknown>)[property];
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A memory store whose every client (the repository and its peers) has the same defect. */
function defectiveFixture(defect: (repository: MemoryRepository) => Repository): () => Promise<RepositoryFixture> {
  return () => {
    const repository = new MemoryRepository();
    return Promise.resolve({ repository: defect(repository), openPeer: () => Promise.resolve(defect(repository.openPeer())), dispose: () => repository.close() });
  };
}

/** Adapters that each break one rule of the contract, as an adapter might. */
const DEFECTS: Record<string, (repository: MemoryRepository) => Repository> = {
  'markAsDone ignores the token (no fencing)': (repository) =>
    overriding(repository, { markAsDone: async (id: string, token: string) => repository.markAsDone(id, (await repository.getById(id)).lease?.token ?? token) }),
  'claimDue ignores priorities': (repository) => overriding(repository, { claimDue: (options: Parameters<Repository['claimDue']>[0]) => repository.claimDue({ ...options, agingMs: 1 }) }),
  'reclaimExpired takes one task at a time': (repository) => overriding(repository, { reclaimExpired: (options: Parameters<Repository['reclaimExpired']>[0]) => repository.reclaimExpired({ ...options, limit: 1 }) }),
  'a poison task needs five unstarted claims': (repository) => overriding(repository, { reclaimExpired: (options: Parameters<Repository['reclaimExpired']>[0]) => repository.reclaimExpired({ ...options, maxUnstartedClaims: 5 }) }),
  'release never refunds the attempt': (repository) =>
    overriding(repository, { release: (id: string, token: string, options: Parameters<Repository['release']>[2]) => repository.release(id, token, { ...options, refundAttempt: false }) }),
  'the change feed skips the last task of a full page': (repository) =>
    overriding(repository, {
      getUpdatedSince: async (cursor: string | null, limit: number) => {
        const page = await repository.getUpdatedSince(cursor, limit);
        return page.tasks.length === limit && limit > 1 ? { ...page, tasks: page.tasks.slice(0, -1) } : page;
      },
    }),
  'claimWithinLimit ignores the limit': (repository) =>
    overriding(repository, { claimWithinLimit: (id: string, options: Parameters<MemoryRepository['claimWithinLimit']>[1]) => repository.claimWithinLimit(id, { ...options, maxWorking: 100 }) }),
  'claimDueWithinLimits ignores the limits': (repository) =>
    overriding(repository, { claimDueWithinLimits: (options: Parameters<MemoryRepository['claimDueWithinLimits']>[0]) => repository.claimDueWithinLimits({ ...options, workLimits: {} }) }),
  'update takes a NaN priority as 0 instead of refusing it': (repository) =>
    overriding(repository, {
      update: (id: string, patch: Parameters<Repository['update']>[1]) => repository.update(id, Number.isNaN(patch.priority) ? { ...patch, priority: 0 } : patch),
    }),
  'listDue pages in reverse': (repository) =>
    overriding(repository, { listDue: async (options: Parameters<Repository['listDue']>[0]) => ({ ...(await repository.listDue(options)), tasks: (await repository.listDue(options)).tasks.reverse() }) }),
};

describe('the model-based test of the Repository contract', () => {
  for (const [defect, mutate] of Object.entries(DEFECTS)) {
    it(`fails an adapter where ${defect}, with a shrunk sequence and its seed`, async () => {
      const error: unknown = await runRepositoryModel(defectiveFixture(mutate), { runs: 100, seed: 42, path: undefined, maxCommands: 25, clients: 3 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/Property failed after \d+ tests[\s\S]*seed: 42, path: "[\d:]+"[\s\S]*Counterexample: /);
      expect(String((error as Error).cause)).toMatch(/disagrees with the reference model|broke invariants/);
    });
  }

  it('fails an adapter whose list reports a new updatedAt at every read, through the invariants alone', async () => {
    // A read that reports the time of the read as updatedAt: a task no call wrote seems to change.
    const bumped = (task: Awaited<ReturnType<Repository['getById']>>) => ({ ...task, updatedAt: new Date(Math.max(Date.now(), task.updatedAt.getTime() + 1)) });
    const fixture = defectiveFixture((repository) =>
      overriding(repository, { list: async (options: Parameters<Repository['list']>[0]) => { const page = await repository.list(options); return { ...page, tasks: page.tasks.map(bumped) }; } }),
    );
    const error: unknown = await runRepositoryModel(fixture, { runs: 50, seed: 42, path: undefined, maxCommands: 25, clients: 3 }).catch((e: unknown) => e);
    expect(String((error as Error).cause)).toMatch(/broke invariants:[\s\S]*updatedAt/);
  });

  it('replays a failure from the seed, path and replayPath it prints: the same minimal sequence, at once', async () => {
    const fixture = defectiveFixture(DEFECTS['reclaimExpired takes one task at a time']!);
    const settings = { runs: 100, seed: 42, maxCommands: 25, clients: 3 };
    const first = String(await runRepositoryModel(fixture, { ...settings, path: undefined }).catch((e: unknown) => e));
    const path = /path: "([\d:]+)"/.exec(first)?.[1];
    const replayPath = /replayPath="([^"]+)"/.exec(first)?.[1];
    expect(path).toBeDefined();
    expect(replayPath).toBeDefined();
    const again = String(await runRepositoryModel(fixture, { ...settings, path, replayPath }).catch((e: unknown) => e));
    expect(again).toMatch(/Property failed after 1 tests/);
    const counterexample = (report: string): string | undefined => report.split('\n').find((line) => line.startsWith('Counterexample'));
    expect(counterexample(again)).toBe(counterexample(first));
  });

  it('passes the MemoryRepository', async () => {
    const fixture = defectiveFixture((repository) => repository);
    await expect(runRepositoryModel(fixture, { runs: 30, seed: 42, path: undefined, maxCommands: 25, clients: 3 })).resolves.toBeUndefined();
  });
});
