/**
 * Durable status hooks end to end on MemoryRepository (the adapters' tests repeat the restart on SQLite and
 * PostgreSQL): changes become outbox rows, a loop per node POSTs them to a real receiver on 127.0.0.1, retries wait
 * on the virtual clock, dead letters are listed and redriven, another node delivers what a stopped node left.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { nextEvent } from '@horae/core/testing';
import { DurableStatusHooks, StatusHookUrlError, WorkRegistry, generateStatusHookSecret, type DurableHookEvents, type Horae, type HoraeOptions } from '@horae/storage';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository } from '@horae/storage';
import { horaeOn, stopAll } from './horae-helpers.js';
import { Receiver } from './hook-receiver.js';

const started: Horae[] = [];
const receivers: Receiver[] = [];
afterEach(async () => {
  await stopAll(started.splice(0));
  for (const receiver of receivers.splice(0)) await receiver.close();
});

/** A virtual clock at the real time: the receivers' library checks timestamps against Date.now(). */
function world(): { clock: VirtualClock; repo: MemoryRepository } {
  const clock = new VirtualClock({ now: Date.now() });
  return { clock, repo: new MemoryRepository({ clock }) };
}

async function receiver(): Promise<{ receiver: Receiver; url: string }> {
  const created = new Receiver();
  receivers.push(created);
  return { receiver: created, url: await created.listen() };
}

async function node(clock: VirtualClock, repo: MemoryRepository, registry: WorkRegistry, options: Partial<HoraeOptions>): Promise<Horae> {
  const horae = horaeOn(clock, repo, registry, options);
  started.push(horae);
  await horae.start();
  return horae;
}

/** Collects one kind of event of a node's durable hooks. */
function collect<K extends keyof DurableHookEvents>(horae: Horae, name: K): Array<DurableHookEvents[K]> {
  const seen: Array<DurableHookEvents[K]> = [];
  horae.durableHooks!.events.on(name, (event) => void seen.push(event));
  return seen;
}

const okWork = (): WorkRegistry => new WorkRegistry().register('w', () => 'ok');

describe('durable status hooks (the outbox) on MemoryRepository', () => {
  it('each change of a task is POSTed once, in order, verifiable with standardwebhooks; delivered rows leave the outbox', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    const secret = generateStatusHookSecret();
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret } });
    expect(horae.hookSenders).toEqual([]);
    const delivered = collect(horae, 'hook:delivered');
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await handle.result;
    await r.requests(3);
    await horae.durableHooks!.flush();

    expect(r.received.map((req) => `${req.json.from ?? 'null'}→${req.json.to}`)).toEqual(['null→Initialized', 'Initialized→Working', 'Working→Done']);
    for (const req of r.received) expect(new Webhook(secret).verify(req.raw.toString('utf8'), req.headers as Record<string, string>)).toEqual(req.json);
    expect(delivered.map((e) => [e.taskId, e.attempts, e.status])).toEqual(Array.from({ length: 3 }, () => [handle.taskId, 1, 204]));
    expect(new Set(r.received.map((req) => req.headers['webhook-id'])).size).toBe(3);
    expect(await repo.hookOutbox().listHookDeliveries()).toEqual([]);
  });

  it('a failing receiver: the row records attempts, error and next try; the retry waits on the clock, then delivers', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = (_req, index) => (index < 2 ? 503 : 204);
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret: generateStatusHookSecret(), backoff: (n) => 10_000 * n } });
    const retrying = collect(horae, 'hook:retrying');
    const firstRetry = nextEvent(horae.durableHooks!.events, 'hook:retrying');
    // Recorded by the scheduler only: a task far in the future, so that one change (its creation) is in flight.
    await horae.schedule({ workId: 'w', delayMs: 3_600_000 });
    expect(await firstRetry).toMatchObject({ attempts: 1, delayMs: 10_000 });
    const [row] = await repo.hookOutbox().listHookDeliveries();
    expect(row).toMatchObject({ state: 'pending', attempts: 1, lastError: expect.stringContaining('503') as unknown, leaseUntil: null });
    expect(row!.nextAttemptAt.getTime()).toBe(clock.now() + 10_000);

    await clock.advance(9_000);
    expect(r.received).toHaveLength(1);
    const secondRetry = nextEvent(horae.durableHooks!.events, 'hook:retrying');
    await clock.advance(1_000);
    expect(await secondRetry).toMatchObject({ attempts: 2, delayMs: 20_000 });
    const delivered = nextEvent(horae.durableHooks!.events, 'hook:delivered');
    await clock.advance(20_000);
    expect(await delivered).toMatchObject({ attempts: 3, status: 204 });
    expect(retrying).toHaveLength(2);
    expect(new Set(r.received.map((req) => req.headers['webhook-id'])).size).toBe(1);
    expect(r.received.map((req) => req.headers['x-horae-delivery-attempt'])).toEqual(['1', '2', '3']);
  });

  it('a status not worth retrying makes a dead letter at once; operators list it and redrive it, and it is delivered', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = () => 410;
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret: generateStatusHookSecret() } });
    const dead = nextEvent(horae.durableHooks!.events, 'hook:dead');
    await horae.schedule({ workId: 'w', delayMs: 3_600_000 });
    const event = await dead;
    expect(event).toMatchObject({ attempts: 1, hook: 'default' });
    expect(event.error).toMatchObject({ status: 410, retryable: false });
    const outbox = horae.durableHooks!.outbox;
    const letters = await outbox.listHookDeliveries({ state: 'dead' });
    expect(letters.map((l) => [l.id, l.attempts])).toEqual([[event.deliveryId, 1]]);
    expect(letters[0]!.lastError).toContain('410');

    r.respond = () => 204;
    const delivered = nextEvent(horae.durableHooks!.events, 'hook:delivered');
    expect(await outbox.redriveHookDelivery(event.deliveryId)).toBe(true);
    await clock.advance(1000); // the next poll finds it
    expect(await delivered).toMatchObject({ deliveryId: event.deliveryId, attempts: 1 });
    expect(await outbox.listHookDeliveries()).toEqual([]);
  });

  it('retryable failures end as a dead letter after maxAttempts', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = () => 500;
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret: generateStatusHookSecret(), maxAttempts: 3, backoff: () => 1000 } });
    const dead = nextEvent(horae.durableHooks!.events, 'hook:dead');
    const retried = collect(horae, 'hook:retrying');
    await horae.schedule({ workId: 'w', delayMs: 3_600_000 });
    await nextEvent(horae.durableHooks!.events, 'hook:retrying');
    await horae.durableHooks!.flush();
    const second = nextEvent(horae.durableHooks!.events, 'hook:retrying');
    await clock.advance(1000);
    await second;
    await horae.durableHooks!.flush();
    await clock.advance(1000);
    expect(await dead).toMatchObject({ attempts: 3 });
    expect(retried).toHaveLength(2);
    expect(r.received).toHaveLength(3);
    expect((await repo.hookOutbox().listHookDeliveries({ state: 'dead' }))[0]).toMatchObject({ attempts: 3 });
  });

  it('what a stopped node did not deliver is delivered by a node started later on the same database', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = () => 503;
    const secret = generateStatusHookSecret();
    const first = await node(clock, repo, okWork(), { statusHooks: { url, secret, backoff: () => 60_000 } });
    const handle = await first.schedule({ workId: 'w' });
    await clock.advance(0);
    await handle.result;
    // The task's first change failed and waits a minute; its later changes wait behind it (one task, in order).
    await r.requests(1);
    await first.durableHooks!.flush();
    await stopAll(started.splice(0));
    const pending = await repo.hookOutbox().listHookDeliveries({ state: 'pending' });
    expect(pending.map((p) => p.attempts)).toEqual([1, 0, 0]);

    r.respond = () => 204;
    const before = r.received.length;
    const second = await node(clock, repo.openPeer(), okWork(), { statusHooks: { url, secret } });
    const delivered = collect(second, 'hook:delivered');
    await clock.advance(60_000);
    await r.requests(before + 3);
    await second.durableHooks!.flush();
    expect(delivered.map((e) => e.attempts)).toEqual([2, 1, 1]);
    expect(r.received.slice(before).map((req) => req.json.to)).toEqual(['Initialized', 'Working', 'Done']);
    expect(await repo.hookOutbox().listHookDeliveries()).toEqual([]);
  });

  it('two nodes sharing the outbox deliver each change exactly once', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    const secret = generateStatusHookSecret();
    const registry = (): WorkRegistry => new WorkRegistry().register('w', () => 'ok');
    const a = await node(clock, repo, registry(), { nodeId: 'a', statusHooks: { url, secret } });
    const b = await node(clock, repo.openPeer(), registry(), { nodeId: 'b', statusHooks: { url, secret } });
    const handles = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).schedule({ workId: 'w' })));
    for (let i = 0; i < 5; i++) await clock.advance(1000);
    await Promise.all(handles.map((h) => h.result));
    await r.requests(60);
    await Promise.all([a.durableHooks!.flush(), b.durableHooks!.flush()]);
    await clock.advance(1000);
    await Promise.all([a.durableHooks!.flush(), b.durableHooks!.flush()]);
    expect(r.received).toHaveLength(60);
    expect(new Set(r.received.map((req) => req.headers['webhook-id'])).size).toBe(60);
    for (const h of handles) {
      expect(r.received.filter((req) => req.json.taskId === h.taskId).map((req) => req.json.to)).toEqual(['Initialized', 'Working', 'Done']);
    }
  });

  it('while the database is down the changes wait in a bounded buffer (oldest dropped), retried on the clock, then land', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    const hooks = new DurableStatusHooks({ outbox: repo.hookOutbox(), hooks: [{ url, secret: generateStatusHookSecret() }], clock, maxBuffered: 2 });
    const errors: Array<DurableHookEvents['hook:outbox-error']> = [];
    const dropped: Array<DurableHookEvents['hook:dropped']> = [];
    hooks.events.on('hook:outbox-error', (e) => void errors.push(e));
    hooks.events.on('hook:dropped', (e) => void dropped.push(e));
    hooks.start();
    repo.setUnavailable(true);
    const failed = new Promise<DurableHookEvents['hook:outbox-error']>((resolve) =>
      hooks.events.on('hook:outbox-error', (e) => (e.operation === 'enqueueHookDeliveries' ? resolve(e) : undefined)),
    );
    hooks.onTransition({ taskId: 't1', workId: 'w', from: null, to: 'Initialized', attempt: 0 });
    expect(await failed).toMatchObject({ operation: 'enqueueHookDeliveries', retryInMs: 100 });
    hooks.onTransition({ taskId: 't1', workId: 'w', from: 'Initialized', to: 'Working', attempt: 1 });
    hooks.onTransition({ taskId: 't1', workId: 'w', from: 'Working', to: 'Done', attempt: 1 });
    expect(dropped.map((d) => [d.reason, d.change.to])).toEqual([['buffer-full', 'Initialized']]);
    repo.setUnavailable(false);
    await clock.advance(100);
    await hooks.flush();
    await r.requests(2);
    await hooks.flush();
    expect(r.received.map((req) => req.json.to)).toEqual(['Working', 'Done']);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    await hooks.stop(0);
    hooks.onTransition({ taskId: 't2', workId: 'w', from: null, to: 'Initialized', attempt: 0 });
    expect(dropped.at(-1)).toMatchObject({ reason: 'closed' });
  });

  it('a receiver that looks down is left alone: after 3 failures in a row only a probe now and then, 1 s, 2 s, 4 s apart', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = () => 503;
    // Backoff 0: without the pause, every failed row would be POSTed again at once, for ever.
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret: generateStatusHookSecret(), backoff: () => 0, concurrency: 2, maxAttempts: 100 } });
    await Promise.all(Array.from({ length: 10 }, () => horae.schedule({ workId: 'w', delayMs: 3_600_000 })));
    await horae.durableHooks!.flush();
    await r.requests(3);
    await horae.durableHooks!.flush();
    const afterTrip = r.received.length;
    expect(afterTrip).toBeLessThanOrEqual(4); // the burst in flight when the third failure came back
    await clock.advance(999);
    await horae.durableHooks!.flush();
    expect(r.received).toHaveLength(afterTrip);
    await clock.advance(1);
    await r.requests(afterTrip + 1);
    await horae.durableHooks!.flush();
    expect(r.received).toHaveLength(afterTrip + 1); // one probe, which failed: the pause doubles
    await clock.advance(1999);
    await horae.durableHooks!.flush();
    expect(r.received).toHaveLength(afterTrip + 1);
    r.respond = () => 204;
    await clock.advance(1);
    // The probe succeeds: the loop goes back to full speed and delivers the ten creations.
    await r.requests(afterTrip + 11);
    for (let i = 0; i < 10 && (await repo.hookOutbox().listHookDeliveries()).length > 0; i++) await horae.durableHooks!.flush();
    expect(await repo.hookOutbox().listHookDeliveries()).toEqual([]);
  });

  it('dead letters past retention are purged by the loop', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    r.respond = () => 400;
    const horae = await node(clock, repo, okWork(), { statusHooks: { url, secret: generateStatusHookSecret(), deadLetterRetentionMs: 2 * 3_600_000 } });
    const dead = nextEvent(horae.durableHooks!.events, 'hook:dead');
    await horae.schedule({ workId: 'w', delayMs: 100 * 3_600_000 });
    await dead;
    expect(await repo.hookOutbox().listHookDeliveries({ state: 'dead' })).toHaveLength(1);
    await clock.advance(3_600_000); // the hourly purge: the letter is one hour old, kept
    expect(await repo.hookOutbox().listHookDeliveries({ state: 'dead' })).toHaveLength(1);
    await clock.advance(2 * 3_600_000);
    expect(await repo.hookOutbox().listHookDeliveries({ state: 'dead' })).toHaveLength(0);
  });

  it('createHorae refuses a hook URL with credentials, without quoting the password', () => {
    const { clock, repo } = world();
    let error: unknown;
    try {
      horaeOn(clock, repo, okWork(), { statusHooks: { url: 'https://ops:s3cr3t-pw@hooks.example.com/x', secret: generateStatusHookSecret() } });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(StatusHookUrlError);
    expect((error as Error).message).not.toContain('s3cr3t-pw');
  });

  it('a repository without an outbox gets the in-memory sender for URL hooks (horae.hookSenders), which delivers', async () => {
    const { clock, repo } = world();
    const { receiver: r, url } = await receiver();
    // The same repository with hookOutbox hidden, as a third-party adapter without the capability would be.
    const withoutOutbox = new Proxy(repo, {
      get: (target, key) => {
        if (key === 'hookOutbox') return undefined;
        const value: unknown = Reflect.get(target, key);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const horae = await node(clock, withoutOutbox, okWork(), { statusHooks: { url, secret: generateStatusHookSecret() } });
    expect(horae.durableHooks).toBeUndefined();
    expect(horae.hookSenders).toHaveLength(1);
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await handle.result;
    await r.requests(3);
    await horae.hookSenders[0]!.flush();
    expect(r.received.map((req) => req.json.to)).toEqual(['Initialized', 'Working', 'Done']);
    expect(await repo.hookOutbox().listHookDeliveries()).toEqual([]);
  });

  it('two hooks need two names; each gets its own rows', async () => {
    const { clock, repo } = world();
    const { url } = await receiver();
    const secret = generateStatusHookSecret();
    expect(() => horaeOn(clock, repo, okWork(), { statusHooks: [{ url, secret }, { url, secret }] })).toThrow(/two hooks are named "default"/);
    const horae = await node(clock, repo, okWork(), { statusHooks: [{ url, secret, name: 'ops' }, { url, secret, name: 'audit' }] });
    await horae.schedule({ workId: 'w', delayMs: 3_600_000 });
    await horae.durableHooks!.flush();
    expect(horae.durableHooks!.loops.map((l) => l.name)).toEqual(['ops', 'audit']);
  });
});
