import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { VirtualClock, nextEvent } from '@horae/core/testing';
import {
  StatusHookDeliveryError,
  StatusHookSender,
  decodeStatusHookSecret,
  signStatusHook,
  statusHooks,
  verifyStatusHookSignature,
  type StatusChange,
  type StatusHookEvents,
  type StatusHookOptions,
} from '@horae/storage';
import { Receiver, gate } from './hook-receiver.js';

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const OLD_SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const START = Date.UTC(2026, 10, 23, 12, 0, 0);

function change(taskId: string, to: StatusChange['to'], extra: Partial<StatusChange> = {}): StatusChange {
  return { taskId, workId: 'email', from: 'Initialized', to, attempt: 1, ...extra };
}

describe('StatusHookSender against a real HTTP receiver', () => {
  let receiver: Receiver;
  let url: string;
  let clock: VirtualClock;
  const senders: StatusHookSender[] = [];

  function sender(options: Partial<StatusHookOptions> = {}): StatusHookSender {
    const created = new StatusHookSender({ url, secret: SECRET, clock, backoff: (n) => 1000 * 2 ** (n - 1), ...options });
    senders.push(created);
    return created;
  }

  beforeEach(async () => {
    receiver = new Receiver();
    url = await receiver.listen();
    clock = new VirtualClock({ now: START });
  });

  afterEach(async () => {
    for (const s of senders.splice(0)) {
      const closing = s.close({ graceMs: 0 });
      await clock.advance(0);
      await closing;
    }
    await receiver.close();
  });

  it('POSTs the change as JSON with the documented shape and headers', async () => {
    const hooks = sender();
    const delivered = nextEvent(hooks.events, 'hook:delivered');
    hooks.notify({ taskId: 't1', workId: 'email', from: 'Initialized', to: 'Working', attempt: 1, time: new Date('2026-11-23T10:00:00.000Z') });
    const event = await delivered;

    expect(receiver.received).toHaveLength(1);
    const [request] = receiver.received;
    expect(request!.json).toEqual({
      taskId: 't1',
      workId: 'email',
      from: 'Initialized',
      to: 'Working',
      attempt: 1,
      time: '2026-11-23T10:00:00.000Z',
    });
    expect(Object.keys(request!.json)).toEqual(['taskId', 'workId', 'from', 'to', 'attempt', 'time']);
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['webhook-timestamp']).toBe(String(Math.floor(START / 1000)));
    expect(request!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(request!.headers['webhook-id']).toBe(event.deliveryId);
    expect(request!.headers['x-horae-delivery-attempt']).toBe('1');
    expect(event).toMatchObject({ attempts: 1, status: 204, change: request!.json });
    expect(hooks.pending).toBe(0);
  });

  it('sends the error as message, name and code, without the stack; time defaults to the clock', async () => {
    const hooks = sender();
    const failure = Object.assign(new TypeError('boom'), { code: 'E_BOOM' });
    hooks.notify(change('t1', 'Failed', { from: 'Working', attempt: 3, error: failure }));
    hooks.notify(change('t2', 'Initialized', { from: null, error: { message: 'stored', name: 'RepositoryError', code: 'REPOSITORY_UNAVAILABLE', stack: 'at x' } }));
    await hooks.flush();

    const byTask = new Map(receiver.received.map((r) => [r.json.taskId, r.json]));
    expect(byTask.get('t1')).toEqual({
      taskId: 't1',
      workId: 'email',
      from: 'Working',
      to: 'Failed',
      attempt: 3,
      time: new Date(START).toISOString(),
      error: { message: 'boom', name: 'TypeError', code: 'E_BOOM' },
    });
    expect(byTask.get('t2')).toMatchObject({ from: null, error: { message: 'stored', name: 'RepositoryError', code: 'REPOSITORY_UNAVAILABLE' } });
    expect(receiver.received.every((r) => !r.raw.toString('utf8').includes('stack'))).toBe(true);
  });

  it('signs the exact body bytes: the receiver verifies them, and a tampered body, timestamp or secret fails', async () => {
    const hooks = sender();
    hooks.notify(change('t1', 'Done', { from: 'Working', error: new Error('ünïcödé ✓') }));
    await hooks.flush();
    const [request] = receiver.received;
    const now = clock.now();

    expect(verifyStatusHookSignature(SECRET, request!.raw, request!.headers, { now })).toBe(true);
    expect(verifyStatusHookSignature(SECRET, request!.raw.toString('utf8'), request!.headers, { now })).toBe(true);

    const tampered = Buffer.from(request!.raw.toString('utf8').replace('"Done"', '"Fail"'));
    expect(tampered.equals(request!.raw)).toBe(false);
    expect(verifyStatusHookSignature(SECRET, tampered, request!.headers, { now })).toBe(false);
    expect(verifyStatusHookSignature(OLD_SECRET, request!.raw, request!.headers, { now })).toBe(false);
    // A replay with a fresh timestamp or a fresh id: the MAC covers both, so it no longer matches.
    const replayed = { ...request!.headers, 'webhook-timestamp': String(Math.floor(now / 1000) + 60) };
    expect(verifyStatusHookSignature(SECRET, request!.raw, replayed, { now })).toBe(false);
    const renamed = { ...request!.headers, 'webhook-id': 'another-id' };
    expect(verifyStatusHookSignature(SECRET, request!.raw, renamed, { now })).toBe(false);
    // The original request replayed later than the window is refused.
    expect(verifyStatusHookSignature(SECRET, request!.raw, request!.headers, { now: now + 5 * 60_000 + 1000 })).toBe(false);
    expect(verifyStatusHookSignature(SECRET, request!.raw, request!.headers, { now: now + 60_000, toleranceMs: 120_000 })).toBe(true);
    // Rotation: any one of several secrets may match.
    expect(verifyStatusHookSignature([OLD_SECRET, SECRET], request!.raw, request!.headers, { now })).toBe(true);
  });

  it('retries a 500 with backoff on the clock, then delivers; same delivery id, fresh signed timestamp each time', async () => {
    receiver.respond = (_request, index) => (index < 2 ? 500 : 200);
    const hooks = sender();
    const retrying: Array<StatusHookEvents['hook:retrying']> = [];
    hooks.events.on('hook:retrying', (event) => retrying.push(event));
    const delivered = nextEvent(hooks.events, 'hook:delivered');

    const firstRetry = nextEvent(hooks.events, 'hook:retrying');
    hooks.notify(change('t1', 'Working'));
    const first = await firstRetry;
    expect(first).toMatchObject({ attempts: 1, delayMs: 1000 });
    expect(first.error).toBeInstanceOf(StatusHookDeliveryError);
    expect(first.error).toMatchObject({ code: 'HOOK_DELIVERY_FAILED', status: 500, retryable: true });
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(999);
    expect(clock.pendingTimers).toBe(1); // not due yet: no second POST
    expect(receiver.received).toHaveLength(1);

    const secondRetry = nextEvent(hooks.events, 'hook:retrying');
    await clock.advance(1);
    expect(await secondRetry).toMatchObject({ attempts: 2, delayMs: 2000 });
    expect(receiver.received).toHaveLength(2);
    await clock.advance(1999);
    expect(clock.pendingTimers).toBe(1);
    expect(receiver.received).toHaveLength(2);
    await clock.advance(1);

    expect(await delivered).toMatchObject({ attempts: 3, status: 200 });
    expect(retrying).toHaveLength(2);
    expect(receiver.received.map((r) => r.headers['x-horae-delivery-attempt'])).toEqual(['1', '2', '3']);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(receiver.received.map((r) => Number(r.headers['webhook-timestamp']) - Math.floor(START / 1000))).toEqual([0, 1, 3]);
    for (const request of receiver.received) {
      const sentAt = Number(request.headers['webhook-timestamp']) * 1000;
      expect(verifyStatusHookSignature(SECRET, request.raw, request.headers, { now: sentAt })).toBe(true);
    }
    expect(hooks.pending).toBe(0);
  });

  it('gives up after maxAttempts and reports hook:failed with the attempts and the last error', async () => {
    receiver.respond = () => 503;
    const hooks = sender({ maxAttempts: 3 });
    hooks.events.on('hook:retrying', (event) => void clock.advance(event.delayMs));
    const delivered: unknown[] = [];
    hooks.events.on('hook:delivered', (event) => delivered.push(event));
    const failed = nextEvent(hooks.events, 'hook:failed');

    hooks.notify(change('t1', 'Done', { from: 'Working' }));
    const event = await failed;

    expect(event.attempts).toBe(3);
    expect(event.change).toMatchObject({ taskId: 't1', to: 'Done' });
    expect(event.error).toBeInstanceOf(StatusHookDeliveryError);
    expect(event.error).toMatchObject({ code: 'HOOK_DELIVERY_FAILED', status: 503 });
    expect(receiver.received).toHaveLength(3);
    expect(delivered).toEqual([]);
    expect(hooks.pending).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not retry a 4xx answer such as 401: it fails at once', async () => {
    receiver.respond = () => 401;
    const hooks = sender({ maxAttempts: 5 });
    const outcome = Promise.race([nextEvent(hooks.events, 'hook:failed'), nextEvent(hooks.events, 'hook:retrying')]);
    hooks.notify(change('t1', 'Working'));
    const event = await outcome;
    expect(event).not.toHaveProperty('delayMs');
    expect(event).toMatchObject({ attempts: 1, error: { status: 401, retryable: false } });
    expect(receiver.received).toHaveLength(1);
  });

  it('retries when the receiver cannot be reached, then reports the network error', async () => {
    const closed = new Receiver();
    const deadUrl = await closed.listen();
    await closed.close();
    const hooks = sender({ url: deadUrl, maxAttempts: 2 });
    hooks.events.on('hook:retrying', (event) => void clock.advance(event.delayMs));
    const event = await new Promise<StatusHookEvents['hook:failed']>((resolve) => {
      hooks.events.on('hook:failed', resolve);
      hooks.notify(change('t1', 'Working'));
    });
    expect(event.attempts).toBe(2);
    expect(event.error.status).toBeUndefined();
    expect(event.error.retryable).toBe(true);
    expect(event.error.message).toContain('could not reach the status hook');
  });

  it('aborts a POST that takes longer than timeoutMs and counts it as a retryable failure', async () => {
    const hold = gate();
    receiver.respond = async () => {
      await hold.promise;
      return 204;
    };
    const hooks = sender({ timeoutMs: 150, maxAttempts: 1 });
    const failed = nextEvent(hooks.events, 'hook:failed');
    hooks.notify(change('t1', 'Working'));
    const event = await failed;
    hold.open();
    expect(event.error).toMatchObject({ retryable: true, status: undefined });
    expect(event.error.message).toContain('did not answer within 150 ms');
  });

  it('notify returns synchronously, before a hanging receiver answers', async () => {
    const hold = gate();
    receiver.respond = async () => {
      await hold.promise;
      return 204;
    };
    const hooks = sender({ concurrency: 2 });
    let delivered = 0;
    hooks.events.on('hook:delivered', () => (delivered += 1));

    const started = performance.now();
    for (let i = 0; i < 200; i += 1) hooks.notify(change(`t${i}`, 'Working'));
    const elapsed = performance.now() - started;

    // Returned with nothing sent yet: every POST happens after notify gave control back.
    expect(receiver.received).toHaveLength(0);
    expect(hooks.pending).toBe(200);
    expect(elapsed).toBeLessThan(100);

    await receiver.requests(2);
    expect(delivered).toBe(0);
    expect(receiver.received).toHaveLength(2); // the concurrency limit holds while the receiver hangs
    const drained = hooks.flush();
    hold.open();
    await drained;
    expect(delivered).toBe(200);
    expect(receiver.received).toHaveLength(200);
  });

  it('bounds the queue: when full, the oldest waiting change is dropped and reported, the newest are kept', async () => {
    const hold = gate();
    receiver.respond = async () => {
      await hold.promise;
      return 204;
    };
    const hooks = sender({ concurrency: 1, maxQueue: 2 });
    const dropped: Array<StatusHookEvents['hook:dropped']> = [];
    hooks.events.on('hook:dropped', (event) => dropped.push(event));

    hooks.notify(change('a', 'Working'));
    await receiver.requests(1); // a is in flight and does not count against maxQueue
    hooks.notify(change('b', 'Working'));
    hooks.notify(change('c', 'Working'));
    expect(dropped).toEqual([]);
    hooks.notify(change('d', 'Working'));
    hooks.notify(change('e', 'Working'));

    expect(dropped.map((event) => [event.change.taskId, event.reason, event.attempts])).toEqual([
      ['b', 'queue-full', 0],
      ['c', 'queue-full', 0],
    ]);
    expect(hooks.pending).toBe(3);
    const drained = hooks.flush();
    hold.open();
    await drained;
    expect(receiver.received.map((r) => r.json.taskId)).toEqual(['a', 'd', 'e']);
  });

  it('keeps the order of changes per task, even across a retry, while other tasks go on', async () => {
    let failedOnce = false;
    receiver.respond = (request) => {
      if (request.json.taskId === 't1' && !failedOnce) {
        failedOnce = true;
        return 500;
      }
      return 204;
    };
    const hooks = sender({ concurrency: 4 });
    const order: string[] = [];
    hooks.events.on('hook:delivered', (event) => order.push(`${event.change.taskId}:${event.change.to}`));
    const retried = nextEvent(hooks.events, 'hook:retrying');

    hooks.notify(change('t1', 'Working'));
    hooks.notify(change('t1', 'Initialized', { from: 'Working', error: new Error('first run failed') }));
    hooks.notify(change('t1', 'Working', { attempt: 2 }));
    hooks.notify(change('t1', 'Done', { from: 'Working', attempt: 2 }));
    hooks.notify(change('t2', 'Working'));
    hooks.notify(change('t2', 'Done', { from: 'Working' }));

    await retried;
    // t1 waits for its retry; t2 is not held up behind it.
    await receiver.requests(3);
    await new Promise<void>((resolve) => {
      if (order.length === 2) resolve();
      else hooks.events.on('hook:delivered', () => order.length === 2 && resolve());
    });
    expect(order).toEqual(['t2:Working', 't2:Done']);
    expect(receiver.received.filter((r) => r.json.taskId === 't1')).toHaveLength(1);

    await clock.advance(1000);
    await hooks.flush();
    expect(order.filter((entry) => entry.startsWith('t1'))).toEqual(['t1:Working', 't1:Initialized', 't1:Working', 't1:Done']);
    expect(receiver.received.filter((r) => r.json.taskId === 't1').map((r) => `${r.json.to}/${r.json.attempt}`)).toEqual([
      'Working/1',
      'Working/1',
      'Initialized/1',
      'Working/2',
      'Done/2',
    ]);
  });

  it('close() drains; after it, notify reports hook:dropped (closed) and never throws', async () => {
    const hooks = sender();
    const delivered: string[] = [];
    hooks.events.on('hook:delivered', (event) => delivered.push(event.change.taskId));
    hooks.notify(change('t1', 'Working'));
    await hooks.close();
    expect(delivered).toEqual(['t1']);

    const dropped = nextEvent(hooks.events, 'hook:dropped');
    expect(() => hooks.notify(change('t2', 'Working'))).not.toThrow();
    expect(await dropped).toMatchObject({ reason: 'closed', attempts: 0, change: { taskId: 't2' } });
    expect(receiver.received).toHaveLength(1);
  });

  it('close({ graceMs }) aborts a hanging POST and drops a waiting retry once the grace period is over', async () => {
    const hold = gate();
    receiver.respond = async (request) => {
      if (request.json.taskId === 't2') return 500;
      await hold.promise;
      return 204;
    };
    const hooks = sender({ timeoutMs: 60_000 });
    const dropped: Array<StatusHookEvents['hook:dropped']> = [];
    hooks.events.on('hook:dropped', (event) => dropped.push(event));
    const retried = nextEvent(hooks.events, 'hook:retrying');
    hooks.notify(change('t1', 'Working'));
    hooks.notify(change('t2', 'Working'));
    await retried;
    await receiver.requests(2);

    let closed = false;
    const closing = hooks.close({ graceMs: 500 }).then(() => (closed = true));
    await clock.advance(499);
    expect(closed).toBe(false);
    expect(hooks.pending).toBe(2);
    await clock.advance(1);
    await closing;
    hold.open();

    expect(dropped.map((event) => [event.change.taskId, event.reason, event.attempts]).sort()).toEqual([
      ['t1', 'closed', 1],
      ['t2', 'closed', 1],
    ]);
    expect(hooks.pending).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a listener that throws breaks neither delivery nor other listeners; its error becomes a warning', async () => {
    const warned = new Promise<Error>((resolve) => {
      const onWarning = (warning: Error): void => {
        if ((warning as { code?: string }).code !== 'HORAE_LISTENER_ERROR') return;
        process.off('warning', onWarning);
        resolve(warning);
      };
      process.on('warning', onWarning);
    });
    const hooks = sender();
    hooks.events.on('hook:delivered', () => {
      throw new Error('listener bug');
    });
    const delivered = nextEvent(hooks.events, 'hook:delivered');
    hooks.notify(change('t1', 'Working'));
    expect((await delivered).change.taskId).toBe('t1');
    hooks.notify(change('t1', 'Done', { from: 'Working' }));
    await hooks.flush();
    expect(receiver.received.map((r) => r.json.to)).toEqual(['Working', 'Done']);
    expect((await warned).message).toContain('listener bug');
  });

  it('statusHooks() gives an unbound (change) => void for the storage middleware', async () => {
    const hooks = statusHooks({ url, secret: SECRET, clock });
    senders.push(hooks.sender);
    const { onTransition } = hooks;
    expect(onTransition(change('t1', 'Working'))).toBeUndefined();
    await hooks.sender.flush();
    expect(receiver.received.map((r) => r.json.taskId)).toEqual(['t1']);
  });
});

describe('verifyStatusHookSignature', () => {
  const body = '{"taskId":"t1"}';
  const now = START;
  const timestamp = String(Math.floor(now / 1000));
  const signature = signStatusHook([decodeStatusHookSecret(SECRET)], 'msg_1', timestamp, body);
  const valid = { 'webhook-id': 'msg_1', 'webhook-timestamp': timestamp, 'webhook-signature': signature };

  it('accepts fetch Headers and Node header records, case-insensitively', () => {
    expect(verifyStatusHookSignature(SECRET, body, new Headers(valid), { now })).toBe(true);
    expect(verifyStatusHookSignature(SECRET, body, { 'Webhook-Id': 'msg_1', 'WEBHOOK-TIMESTAMP': timestamp, 'webhook-signature': signature }, { now })).toBe(true);
    expect(verifyStatusHookSignature(SECRET, Buffer.from(body), { ...valid, 'webhook-signature': [signature] }, { now })).toBe(true);
  });

  it('refuses missing, repeated or malformed headers', () => {
    const { 'webhook-id': _id, ...noId } = valid;
    expect(verifyStatusHookSignature(SECRET, body, noId, { now })).toBe(false);
    expect(verifyStatusHookSignature(SECRET, body, { ...valid, 'webhook-signature': [signature, signature] }, { now })).toBe(false);
    expect(verifyStatusHookSignature(SECRET, body, { ...valid, 'webhook-timestamp': `${timestamp}.5` }, { now })).toBe(false);
    expect(verifyStatusHookSignature(SECRET, body, { ...valid, 'webhook-signature': 'v1,AAAA' }, { now })).toBe(false);
    expect(verifyStatusHookSignature(SECRET, body, { ...valid, 'webhook-signature': signature.replace('v1,', 'v2,') }, { now })).toBe(false);
  });

  it('refuses a secret outside the whsec_ format as a configuration error that does not quote it', () => {
    for (const bad of ['', 'plain-text-secret', 'whsec_not base64!', `whsec_${Buffer.alloc(8).toString('base64')}`]) {
      let error: unknown;
      try {
        verifyStatusHookSignature(bad, body, valid, { now });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(InvalidInputError);
      if (bad !== '') expect((error as Error).message).not.toContain(bad);
    }
  });
});

describe('StatusHookSender options', () => {
  it('refuses a bad URL, an empty secret and out-of-range numbers with InvalidInputError', () => {
    const base = { url: 'http://127.0.0.1:1/hooks', secret: SECRET };
    expect(() => new StatusHookSender({ ...base, url: 'ftp://example.com/x' })).toThrow(InvalidInputError);
    expect(() => new StatusHookSender({ ...base, url: 'not a url' })).toThrow(InvalidInputError);
    expect(() => new StatusHookSender({ ...base, secret: '' })).toThrow(InvalidInputError);
    expect(() => new StatusHookSender({ ...base, secret: 'not-a-whsec-secret' })).toThrow(InvalidInputError);
    expect(() => new StatusHookSender({ ...base, secret: [] })).toThrow(InvalidInputError);
    for (const key of ['maxAttempts', 'concurrency', 'maxQueue', 'timeoutMs'] as const) {
      expect(() => new StatusHookSender({ ...base, [key]: 0 })).toThrow(InvalidInputError);
      expect(() => new StatusHookSender({ ...base, [key]: 1.5 })).toThrow(InvalidInputError);
    }
    expect(() => new StatusHookSender(base)).not.toThrow();
  });

  it('rejects close() with a negative graceMs', async () => {
    const hooks = new StatusHookSender({ url: 'http://127.0.0.1:1/hooks', secret: SECRET });
    await expect(hooks.close({ graceMs: -1 })).rejects.toBeInstanceOf(InvalidInputError);
    await hooks.close();
  });
});
