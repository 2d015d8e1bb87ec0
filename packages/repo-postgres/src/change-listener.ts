/**
 * The LISTEN side of {@link ChangeNotifier}: one dedicated connection per repository that LISTENs on the
 * schema's channel and fans notices out to subscribers, reconnecting with backoff when the connection drops.
 */
import type { TaskChangeNotice, TaskChangeReason } from '@horae/storage';
import type { PgNotification, PgPoolClient } from './pg-types.js';
import { quoteIdent } from './schema.js';
import { translateError } from './translate-error.js';

const REASONS: ReadonlySet<string> = new Set<TaskChangeReason>(['inserted', 'updated', 'cancelled', 'released']);

/** Parses a notification payload; null when it is not a notice this adapter sent. */
export function parseNotice(payload: string | undefined): TaskChangeNotice | null {
  if (payload === undefined) return null;
  try {
    const value = JSON.parse(payload) as { taskId?: unknown; reason?: unknown };
    if (typeof value.taskId === 'string' && typeof value.reason === 'string' && REASONS.has(value.reason)) {
      return { taskId: value.taskId, reason: value.reason as TaskChangeReason };
    }
  } catch {
    // Someone else's NOTIFY on our channel: not ours to interpret.
  }
  return null;
}

/** Options of a {@link ChangeListener}. */
export interface ChangeListenerOptions {
  /** Opens the dedicated connection (a new client, or one checked out of a caller's pool). */
  connect(): Promise<PgPoolClient>;
  /** The channel to LISTEN on. */
  channel: string;
  /** First reconnect delay; doubles up to `maxBackoffMs`. @defaultValue 100 */
  minBackoffMs?: number;
  /** Longest reconnect delay. @defaultValue 5000 */
  maxBackoffMs?: number;
}

/**
 * Holds the LISTEN connection while anyone is subscribed.
 *
 * Rule: a subscriber hears every notice committed after its `subscribe` resolved while the connection is up;
 * notices sent while it is down are lost (they are hints: the next sync reads the change anyway).
 */
export class ChangeListener {
  readonly #options: ChangeListenerOptions;
  readonly #listeners = new Set<(notice: TaskChangeNotice) => void>();
  #client: PgPoolClient | null = null;
  #connecting: Promise<void> | null = null;
  #retry: NodeJS.Timeout | null = null;
  #backoffMs: number;
  #closed = false;

  /** @param options - how to connect, and where to listen */
  constructor(options: ChangeListenerOptions) {
    this.#options = options;
    this.#backoffMs = options.minBackoffMs ?? 100;
  }

  /** True while the LISTEN connection is up. */
  get connected(): boolean {
    return this.#client !== null;
  }

  /**
   * Adds a subscriber; resolves once the channel is LISTENed to.
   *
   * @returns a function that removes it (and drops the connection when it was the last)
   * @throws RepositoryError when the connection cannot be opened; the subscriber is not added
   */
  async subscribe(listener: (notice: TaskChangeNotice) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw translateError(new Error('the repository is closed'), 'subscribe to changes');
    await this.#ensureConnected();
    // A copy per subscription, so the same function subscribed twice is two subscriptions.
    const entry = (notice: TaskChangeNotice): void => listener(notice);
    this.#listeners.add(entry);
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      this.#listeners.delete(entry);
      if (this.#listeners.size === 0) await this.#disconnect();
    };
  }

  /** Drops the connection and stops reconnecting. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    await this.#disconnect();
  }

  async #ensureConnected(): Promise<void> {
    if (this.#client !== null) return;
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = null;
    });
    await this.#connecting;
  }

  async #connect(): Promise<void> {
    let client: PgPoolClient;
    try {
      client = await this.#options.connect();
    } catch (error) {
      throw translateError(error, 'open the LISTEN connection');
    }
    client.on('notification', (message: PgNotification) => {
      if (message.channel !== this.#options.channel) return;
      const notice = parseNotice(message.payload);
      if (notice === null) return;
      for (const listener of [...this.#listeners]) {
        try {
          listener(notice);
        } catch {
          // A subscriber's bug must not silence the others.
        }
      }
    });
    const onDrop = (): void => this.#dropped(client);
    client.on('error', onDrop);
    client.on('end', onDrop);
    try {
      await client.query({ text: `LISTEN ${quoteIdent(this.#options.channel)}` });
    } catch (error) {
      client.removeAllListeners('notification');
      client.release(true);
      throw translateError(error, 'LISTEN for changes');
    }
    if (this.#closed) {
      client.release(true);
      return;
    }
    this.#client = client;
    this.#backoffMs = this.#options.minBackoffMs ?? 100;
  }

  #dropped(client: PgPoolClient): void {
    if (this.#client !== client) return;
    this.#client = null;
    client.removeAllListeners('notification');
    try {
      client.release(true);
    } catch {
      // Already ended.
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#retry !== null) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#options.maxBackoffMs ?? 5_000);
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#closed || this.#listeners.size === 0) return;
      this.#ensureConnected().catch(() => this.#scheduleReconnect());
    }, delay);
  }

  async #disconnect(): Promise<void> {
    if (this.#retry !== null) {
      clearTimeout(this.#retry);
      this.#retry = null;
    }
    if (this.#connecting !== null) await this.#connecting.catch(() => undefined);
    const client = this.#client;
    this.#client = null;
    if (client === null) return;
    client.removeAllListeners('notification');
    try {
      await client.query({ text: `UNLISTEN ${quoteIdent(this.#options.channel)}` });
    } catch {
      // The connection is going away anyway.
    }
    // Destroy rather than return it to a pool: a pooled connection must not carry LISTEN state.
    client.release(true);
  }
}
