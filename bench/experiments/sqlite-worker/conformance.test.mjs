// The shared Repository conformance suite, and the error mapping and close() of the worker proxy: the A/B of run.mjs
// compares a faithful implementation, not a shortcut. See vitest.config.mjs for how to run it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HoraeError, InvalidInputError } from '@horae/core';
import { InvalidStateError, LeaseLostError, RepositoryError, TaskNotDueError, TaskNotFoundError } from '@horae/storage';
import { describeRepositoryConformance } from '@horae/storage/testing';
import { openSqliteWorkerRepository } from './sqlite-worker-repository.mjs';

async function workerFixture() {
  const dir = mkdtempSync(join(tmpdir(), 'horae-sqlite-worker-'));
  const database = join(dir, 'horae.db');
  const opened = [];
  const open = async () => {
    const repository = await openSqliteWorkerRepository({ database });
    opened.push(repository);
    return repository;
  };
  const repository = await open();
  return {
    repository,
    openPeer: open,
    dispose: async () => {
      for (const r of opened) await r.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describeRepositoryConformance('SqliteRepository on a worker thread (experiment)', workerFixture);

describe('the worker proxy', () => {
  it('rebuilds each Horae error with its class, code, message and fields', async () => {
    const { repository, dispose } = await workerFixture();
    try {
      const notFound = await repository.getById('nope').catch((e) => e);
      expect(notFound).toBeInstanceOf(TaskNotFoundError);
      expect(notFound).toBeInstanceOf(HoraeError);
      expect(notFound).toMatchObject({ code: 'TASK_NOT_FOUND', taskId: 'nope', name: 'TaskNotFoundError', message: 'no task has the id "nope"' });

      const bad = await repository.insert({ workId: 'w', scheduledAt: new Date(Number.NaN) }).catch((e) => e);
      expect(bad).toBeInstanceOf(InvalidInputError);
      expect(bad.code).toBe('INVALID_INPUT');

      const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(Date.now() + 60_000) });
      const notDue = await repository.claim(task.id, { owner: 'n1', leaseMs: 1000 }).catch((e) => e);
      expect(notDue).toBeInstanceOf(TaskNotDueError);
      expect(notDue.dueInMs).toBeGreaterThan(0);

      await repository.update(task.id, { scheduledAt: new Date(Date.now() - 1000) });
      const claimed = await repository.claim(task.id, { owner: 'n1', leaseMs: 30_000 });
      const lost = await repository.markAsDone(task.id, 'not-the-token').catch((e) => e);
      expect(lost).toBeInstanceOf(LeaseLostError);
      expect(lost).toMatchObject({ code: 'LEASE_LOST', taskId: task.id });

      const done = await repository.markAsDone(task.id, claimed.lease.token);
      expect(done.state).toBe('Done');
      expect(done.updatedAt).toBeInstanceOf(Date);
      const invalid = await repository.update(task.id, { priority: 3 }).catch((e) => e);
      expect(invalid).toBeInstanceOf(InvalidStateError);
      expect(invalid).toMatchObject({ code: 'INVALID_STATE', taskId: task.id, state: 'Done' });
    } finally {
      await dispose();
    }
  });

  it('close() ends the thread; later calls fail with a RepositoryError', async () => {
    const { repository, dispose } = await workerFixture();
    await repository.close();
    await repository.close();
    const after = await repository.getCursor().catch((e) => e);
    expect(after).toBeInstanceOf(RepositoryError);
    expect(after.code).toBe('REPOSITORY_UNAVAILABLE');
    await dispose();
  });
});
