import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WorkRegistry, generateStatusHookSecret, verifyStatusHookSignature, type StatusHookPayload } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanups, deferred, startNode, tempDatabase, withTimeout } from './helpers.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('feature: unique tasks (SQLite)', () => {
  it('two nodes racing to schedule one uniqueKey get the same task; once it ended, the key is free again', async () => {
    const db = tempDatabase(cleanups);
    const runs: string[] = [];
    const registry = new WorkRegistry().register('report', (ctx) => void runs.push(ctx.taskId));
    const a = await startNode(db, registry, cleanups, { nodeId: 'a' });
    const b = await startNode(db, registry, cleanups, { nodeId: 'b' });
    for (let round = 0; round < 5; round++) {
      const key = `report:${round}`;
      const [fromA, fromB, fromA2] = await Promise.all([
        a.schedule({ workId: 'report', uniqueKey: key, delayMs: 60_000 }),
        b.schedule({ workId: 'report', uniqueKey: key, delayMs: 60_000 }),
        a.schedule({ workId: 'report', uniqueKey: key, delayMs: 60_000 }),
      ]);
      expect(fromB.taskId).toBe(fromA.taskId);
      expect(fromA2.taskId).toBe(fromA.taskId);
    }
    const repo = db.open();
    const tasks = (await repo.list({ limit: 100 })).tasks;
    expect(tasks).toHaveLength(5);
    expect(new Set(tasks.map((t) => t.uniqueKey)).size).toBe(5);
    // A terminal task frees its key: the next schedule creates a new task.
    const first = tasks[0]!;
    expect(await a.cancel(first.id)).toBe(true);
    const again = await b.schedule({ workId: 'report', uniqueKey: first.uniqueKey!, delayMs: 60_000 });
    expect(again.taskId).not.toBe(first.id);
    expect(runs).toEqual([]);
  }, 15_000);
});

interface Received {
  body: Buffer;
  headers: IncomingHttpHeaders;
}

describe('feature: status hooks POST to a real HTTP server (SQLite)', () => {
  it('every transition of a task is POSTed once, in order, with a valid HMAC signature', async () => {
    const secret = generateStatusHookSecret();
    const received: Received[] = [];
    const allIn = deferred();
    const expected = 5;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ body: Buffer.concat(chunks), headers: req.headers });
        res.writeHead(204).end();
        if (received.length >= expected) allIn.resolve();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;

    const db = tempDatabase(cleanups);
    let calls = 0;
    const registry = new WorkRegistry().register('flaky', () => {
      if (++calls === 1) throw new Error('first run fails');
      return 'ok';
    }, { maxAttempts: 2, retry: () => 50 });
    const horae = await startNode(db, registry, cleanups, { nodeId: 'hooked', statusHooks: { url: `http://127.0.0.1:${port}/horae`, secret } });
    const handle = await horae.schedule({ workId: 'flaky' });
    await expect(withTimeout(handle.result, 5000, 'the task to end')).resolves.toBe('ok');
    await withTimeout(allIn.promise, 5000, `${expected} hook requests`);
    await horae.durableHooks!.flush();

    expect(received).toHaveLength(expected);
    for (const request of received) {
      expect(request.headers['content-type']).toBe('application/json');
      expect(verifyStatusHookSignature(secret, request.body, request.headers)).toBe(true);
      expect(verifyStatusHookSignature(generateStatusHookSecret(), request.body, request.headers)).toBe(false);
    }
    const changes = received.map((r) => JSON.parse(r.body.toString('utf8')) as StatusHookPayload);
    expect(changes.every((c) => c.taskId === handle.taskId && c.workId === 'flaky')).toBe(true);
    expect(changes.map((c) => `${c.from ?? 'null'}→${c.to}@${c.attempt}`)).toEqual([
      'null→Initialized@0',
      'Initialized→Working@1',
      'Working→Initialized@1',
      'Initialized→Working@2',
      'Working→Done@2',
    ]);
    expect(changes[2]!.error).toMatchObject({ message: 'first run fails', name: 'Error' });
    expect(new Set(received.map((r) => r.headers['webhook-id'])).size).toBe(expected);
    // The task's own state never waited for the hooks.
    expect(await horae.getTask(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2 });
  }, 15_000);
});
