// Issue 10, defect 5, against a real PostgreSQL outage: the shared server is never stopped. A closed port
// (127.0.0.1:1) is a server that is down from the start; a TCP relay in front of the test server, closed and opened
// again, is a server that goes away and comes back (its connections cut, new ones refused).
import net from 'node:net';
import { ScheduleTimeoutError } from '@horae/core';
import { PostgresRepository } from '@horae/repo-postgres';
import { BackpressureError, RepositoryError, WorkRegistry, createHorae, type RepositoryErrorEvent } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { PG_URL, dropSchema, testSchema } from './pg-fixture.js';

/** A TCP relay to the test server that can refuse connections (and cut the open ones) and accept them again. */
async function relay(): Promise<{ url: string; down(): Promise<void>; up(): Promise<void>; close(): Promise<void> }> {
  const target = new URL(PG_URL);
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 5432), target.hostname);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('error', () => undefined);
          socket.on('close', () => sockets.delete(socket));
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });
  const down = (): Promise<void> =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      if (server === undefined) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  await listen();
  const url = new URL(PG_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return { url: url.toString(), down, up: listen, close: down };
}

describe('PostgreSQL down: start()', () => {
  it('rejects with the RepositoryError at once (the server refuses connections), starts nothing, and stop() resolves', async () => {
    const repository = new PostgresRepository({ connectionString: 'postgres://postgres@127.0.0.1:1/horae_outage' });
    const horae = createHorae({ repository, registry: new WorkRegistry().register('w', () => undefined) });
    const startedAt = Date.now();
    await expect(horae.start()).rejects.toBeInstanceOf(RepositoryError);
    expect(Date.now() - startedAt).toBeLessThan(5_000);
    expect(horae.started).toBe(false);
    expect(horae.scheduler.started).toBe(false);
    await horae.stop();
    await repository.close();
  });
});

describe('PostgreSQL goes away and comes back', () => {
  it('schedule() calls are bounded, refused past the bound, given up by timeoutMs; reports are few; the waiting ones land and run', async () => {
    const schema = testSchema();
    const link = await relay();
    const repository = new PostgresRepository({ connectionString: link.url, schema, poolSize: 4 });
    await repository.init();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const horae = createHorae({ repository, registry, maxPendingSchedules: 3, syncIntervalMs: 500 });
    const errors: RepositoryErrorEvent[] = [];
    horae.events.on('repository:error', (event) => void errors.push(event));
    try {
      await horae.start();
      await link.down();

      const firstError = horae.events.once('repository:error');
      const first = horae.schedule({ workId: 'w', taskId: 'first' });
      await firstError;
      const second = horae.schedule({ workId: 'w', taskId: 'second' });
      const timed = horae.schedule({ workId: 'w', taskId: 'timed' }, { timeoutMs: 300 });
      const refused = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => horae.schedule({ workId: 'w', taskId: `refused-${i}` })));
      for (const outcome of refused) {
        expect(outcome.status).toBe('rejected');
        expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(BackpressureError);
      }
      await expect(timed).rejects.toBeInstanceOf(ScheduleTimeoutError);
      await expect(timed).rejects.toMatchObject({ code: 'SCHEDULE_TIMEOUT', mayHaveBeenWritten: true });
      // However many tries failed, the insert's failures were reported once (the interval is 10 s).
      expect(errors.filter((e) => e.operation === 'insert')).toHaveLength(1);

      const recovered = horae.events.once('repository:recovered');
      await link.up();
      const end = await recovered;
      expect(end.failures).toBeGreaterThanOrEqual(errors.length);
      const handles = await Promise.all([first, second]);
      await Promise.all(handles.map((handle) => handle.result));
      expect(runs.sort()).toEqual(['first', 'second']);
      // The given-up call's tries never reached the server: no row has its id (its cancel found none), and no
      // refused call wrote anything.
      await expect(repository.getById('timed')).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
      await expect(repository.getById('refused-0')).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
    } finally {
      await horae.stop({ timeoutMs: 1_000 });
      await repository.close();
      await link.close();
      await dropSchema(schema);
    }
  });
});
