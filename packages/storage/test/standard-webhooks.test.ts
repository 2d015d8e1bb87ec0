/**
 * Status hooks as a receiver sees them: every delivery verifies with the receivers' own library
 * (`standardwebhooks`, exactly as its README shows), a captured request replayed under a fresh id or a fresh
 * timestamp does not, both secrets verify while one is being rotated, and a URL with credentials is refused at
 * configuration without its password in the error.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { InvalidInputError, realClock } from '@horae/core';
import { StatusHookSender, StatusHookUrlError, generateStatusHookSecret, statusHooks, type StatusHookOptions } from '@horae/storage';
import { Receiver, type Received } from './hook-receiver.js';

/** What a receiver does with a request: `new Webhook(secret).verify(rawBody, headers)`. */
function verifyAsReceiver(secret: string, request: Pick<Received, 'raw' | 'headers'>): unknown {
  return new Webhook(secret).verify(request.raw.toString('utf8'), request.headers as Record<string, string>);
}

describe('status hooks in the Standard Webhooks format, checked with the standardwebhooks library', () => {
  let receiver: Receiver;
  let url: string;
  const senders: StatusHookSender[] = [];

  function sender(options: Partial<StatusHookOptions> & Pick<StatusHookOptions, 'secret'>): StatusHookSender {
    // The real clock: the library checks the timestamp against the receiver's own Date.now().
    const created = new StatusHookSender({ url, clock: realClock, ...options });
    senders.push(created);
    return created;
  }

  beforeEach(async () => {
    receiver = new Receiver();
    url = await receiver.listen();
  });

  afterEach(async () => {
    for (const s of senders.splice(0)) await s.close({ graceMs: 0 });
    await receiver.close();
  });

  it('every delivery verifies with the library and parses to the payload; a changed id, timestamp or body does not', async () => {
    const secret = generateStatusHookSecret();
    const hooks = sender({ secret });
    hooks.notify({ taskId: 't1', workId: 'email', from: 'Working', to: 'Failed', attempt: 2, error: new Error('SMTP refused') });
    hooks.notify({ taskId: 't2', workId: 'email', from: null, to: 'Initialized', attempt: 0 });
    await hooks.flush();
    expect(receiver.received).toHaveLength(2);
    for (const request of receiver.received) expect(verifyAsReceiver(secret, request)).toEqual(request.json);

    const [captured] = receiver.received;
    // The replay the issue describes: the same request under a fresh delivery id, to pass the receiver's dedupe.
    const freshId = { ...captured!, headers: { ...captured!.headers, 'webhook-id': `${String(captured!.headers['webhook-id'])}-2` } };
    expect(() => verifyAsReceiver(secret, freshId)).toThrow(WebhookVerificationError);
    const freshTimestamp = { ...captured!, headers: { ...captured!.headers, 'webhook-timestamp': String(Number(captured!.headers['webhook-timestamp']) + 1) } };
    expect(() => verifyAsReceiver(secret, freshTimestamp)).toThrow(WebhookVerificationError);
    const tampered = { ...captured!, raw: Buffer.from(captured!.raw.toString('utf8').replace('"Failed"', '"Done"')) };
    expect(() => verifyAsReceiver(secret, tampered)).toThrow(WebhookVerificationError);
    expect(() => verifyAsReceiver(generateStatusHookSecret(), captured!)).toThrow(WebhookVerificationError);
  });

  it('rotation: with [new, old] configured, each delivery carries two signatures and either secret verifies it alone', async () => {
    const oldSecret = generateStatusHookSecret();
    const newSecret = generateStatusHookSecret();
    const before = sender({ secret: oldSecret });
    before.notify({ taskId: 't1', workId: 'email', from: null, to: 'Initialized', attempt: 0 });
    await before.flush();
    const during = sender({ secret: [newSecret, oldSecret] });
    during.notify({ taskId: 't1', workId: 'email', from: 'Initialized', to: 'Working', attempt: 1 });
    await during.flush();
    const after = sender({ secret: newSecret });
    after.notify({ taskId: 't1', workId: 'email', from: 'Working', to: 'Done', attempt: 1 });
    await after.flush();

    const [old, overlap, current] = receiver.received;
    expect(String(overlap!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verifyAsReceiver(oldSecret, old!)).toBeTruthy();
    expect(verifyAsReceiver(oldSecret, overlap!)).toBeTruthy();
    expect(verifyAsReceiver(newSecret, overlap!)).toBeTruthy();
    expect(verifyAsReceiver(newSecret, current!)).toBeTruthy();
    // Outside the overlap only the secret in use verifies.
    expect(() => verifyAsReceiver(newSecret, old!)).toThrow(WebhookVerificationError);
    expect(() => verifyAsReceiver(oldSecret, current!)).toThrow(WebhookVerificationError);
  });

  it('the library signs what we sign: same id, timestamp and body give the same v1 signature', async () => {
    const secret = generateStatusHookSecret();
    const hooks = sender({ secret });
    hooks.notify({ taskId: 't1', workId: 'email', from: null, to: 'Initialized', attempt: 0 });
    await hooks.flush();
    const [request] = receiver.received;
    const expected = new Webhook(secret).sign(String(request!.headers['webhook-id']), new Date(Number(request!.headers['webhook-timestamp']) * 1000), request!.raw);
    expect(request!.headers['webhook-signature']).toBe(expected);
  });
});

describe('a hook URL with credentials', () => {
  it('is refused at configuration with a StatusHookUrlError that does not quote the password', () => {
    const password = 'hunter2-very-secret';
    for (const url of [`https://ops:${password}@hooks.example.com/horae`, `https://${password}@hooks.example.com/horae`, new URL(`http://ops:${password}@127.0.0.1:9/x`)]) {
      let error: unknown;
      try {
        statusHooks({ url, secret: generateStatusHookSecret() });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(StatusHookUrlError);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error).toMatchObject({ code: 'INVALID_INPUT', reason: 'credentials' });
      expect((error as Error).message).not.toContain(password);
      expect((error as Error).message).toContain(new URL(String(url)).host);
    }
  });

  it('a malformed URL is refused without quoting it (it may hold a password too)', () => {
    expect(() => statusHooks({ url: 'http://ops:hunter2@[bad', secret: generateStatusHookSecret() })).toThrow(StatusHookUrlError);
    try {
      statusHooks({ url: 'http://ops:hunter2@[bad', secret: generateStatusHookSecret() });
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
  });
});
