/**
 * A real HTTP receiver of status hooks on 127.0.0.1, for the tests of the in-memory sender and of the outbox's delivery loop.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StatusHookPayload } from '@horae/storage';

export interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  json: StatusHookPayload;
}

export type Responder = (request: Received, index: number) => number | Promise<number>;

/** A real HTTP receiver on 127.0.0.1 that records every request and answers what `respond` says. */
export class Receiver {
  readonly received: Received[] = [];
  respond: Responder = () => 204;
  #waiters: Array<{ count: number; resolve: () => void }> = [];
  readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const request: Received = { headers: req.headers, raw, json: JSON.parse(raw.toString('utf8')) as StatusHookPayload };
        const index = this.received.push(request) - 1;
        for (const waiter of this.#waiters.filter((w) => this.received.length >= w.count)) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
        void Promise.resolve(this.respond(request, index)).then(
          (status) => {
            if (!res.destroyed) res.writeHead(status).end();
          },
          () => res.destroy(),
        );
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }

  /** Resolves once `count` requests in all have arrived. */
  requests(count: number): Promise<void> {
    if (this.received.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A promise that can be resolved from outside: holds a receiver's answer. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

