/**
 * Durable status hooks survive a crash at the worst moment: a node is SIGKILLed from inside the event of a change,
 * right after the change committed and before any later line of its code runs. Every change the node committed has
 * its deliveries in the outbox, because the database wrote them in the change's own transaction. (Before hook
 * subscriptions, the node enqueued them some 20 ms after the commit: this kill lost the Done delivery every time.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteRepository } from '@horae/repo-sqlite';
import { PostgresRepository } from '@horae/repo-postgres';
import type { HookOutbox, Repository, StatusHookPayload } from '@horae/storage';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildPackagesForChildren, builtPackageUrl } from '../support/built-packages.js';
import { PG_URL, dropSchema, testSchema } from '../../packages/repo-postgres/test/pg-fixture.js';

beforeAll(() => buildPackagesForChildren(['repo-sqlite', 'repo-postgres']), 120_000);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Runs a node in a child process that schedules one task, runs it, and kills itself with SIGKILL in the
 * `task:succeeded` listener (the Done is committed when it fires). Its one hook points at a closed port, so nothing
 * is delivered and every row stays in the outbox.
 */
function runAndKillAtDone(repositorySource: string): Promise<{ signal: NodeJS.Signals | null; stdout: string }> {
  const source = `
    const { createHorae, WorkRegistry, generateStatusHookSecret } = await import(${JSON.stringify(builtPackageUrl('storage'))});
    ${repositorySource}
    const registry = new WorkRegistry().register('job', () => undefined);
    const horae = createHorae({ repository, registry, nodeId: 'doomed', statusHooks: { url: 'http://127.0.0.1:9/hook', secret: generateStatusHookSecret() } });
    horae.events.on('task:succeeded', ({ task }) => {
      console.log('done ' + task.id);
      process.kill(process.pid, 'SIGKILL');
    });
    await horae.start();
    await horae.schedule({ workId: 'job', param: { n: 1 } });
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', source], { timeout: 60_000 }, (error, stdout) => {
      if (error !== null && error.signal !== 'SIGKILL') reject(new Error(`the node failed: ${error.message}`, { cause: error }));
      else resolve({ signal: error?.signal ?? null, stdout });
    });
  });
}

/**
 * Checks what the killed node left: it was killed (not an exit), its task is Done, and the outbox holds the three
 * changes of the task in order.
 */
async function expectEveryChangeDelivered(killed: { signal: NodeJS.Signals | null; stdout: string }, open: () => Repository & { hookOutbox(): HookOutbox }): Promise<void> {
  expect(killed.signal).toBe('SIGKILL');
  const taskId = /done (\S+)/.exec(killed.stdout)?.[1];
  expect(taskId).toBeDefined();
  const repository = open();
  cleanups.push(() => repository.close());
  expect((await repository.getById(taskId!)).state).toBe('Done');
  const rows = await repository.hookOutbox().listHookDeliveries({ hook: 'default', limit: 100 });
  const changes = rows.map((row) => {
    const { taskId: id, from, to } = JSON.parse(row.body) as StatusHookPayload;
    return { taskId: id, from, to };
  });
  expect(changes).toEqual([
    { taskId, from: null, to: 'Initialized' },
    { taskId, from: 'Initialized', to: 'Working' },
    { taskId, from: 'Working', to: 'Done' },
  ]);
}

describe('durable status hooks: a node killed right after a change committed', () => {
  it('SQLite: the outbox holds the deliveries of every change it committed, Done included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'horae-hook-crash-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'hooks.db');
    const killed = await runAndKillAtDone(`
      const { SqliteRepository } = await import(${JSON.stringify(builtPackageUrl('repo-sqlite'))});
      const repository = new SqliteRepository({ database: ${JSON.stringify(file)} });
    `);
    await expectEveryChangeDelivered(killed, () => new SqliteRepository({ database: file }));
  }, 90_000);

  it('PostgreSQL: the outbox holds the deliveries of every change it committed, Done included', async () => {
    const schema = testSchema();
    cleanups.push(() => dropSchema(schema));
    const killed = await runAndKillAtDone(`
      const { PostgresRepository } = await import(${JSON.stringify(builtPackageUrl('repo-postgres'))});
      const repository = new PostgresRepository({ connectionString: ${JSON.stringify(PG_URL)}, schema: ${JSON.stringify(schema)} });
    `);
    await expectEveryChangeDelivered(killed, () => new PostgresRepository({ connectionString: PG_URL, schema }));
  }, 90_000);
});
