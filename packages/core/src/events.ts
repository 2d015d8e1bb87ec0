/**
 * A small typed event emitter. The scheduler reports what happens to tasks through it, and the storage package
 * reuses it for its own event map. A listener that throws never breaks the code that emitted the event.
 */

/** A listener of the event `K` of the map `M`. */
export type EventListener<M, K extends keyof M> = (payload: M[K]) => void;

/** Options of a {@link TypedEventEmitter}. */
export interface TypedEventEmitterOptions {
  /**
   * Receives the error thrown by a listener, and the event's name. An error it throws itself is dropped.
   *
   * @defaultValue {@link warnListenerError}: a process warning
   */
  onListenerError?: (error: unknown, event: string) => void;
}

/**
 * The default report of a listener's error: a process warning (code `HORAE_LISTENER_ERROR`) that carries the stack.
 *
 * @param error - what the listener threw
 * @param event - the event it listened to
 */
export function warnListenerError(error: unknown, event: string): void {
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.emitWarning(`a listener of "${event}" threw: ${detail}`, { code: 'HORAE_LISTENER_ERROR' });
}

/**
 * An event emitter whose event names and payloads are checked by the compiler.
 *
 * Rules: listeners run synchronously in the order they were added; a listener added or removed during an
 * emit takes effect from the next emit; a listener that throws is reported to `onListenerError` and the other
 * listeners still run; `emit` never throws.
 *
 * @example
 * ```ts
 * const events = new TypedEventEmitter<{ tick: { n: number } }>();
 * const off = events.on('tick', ({ n }) => console.log(n));
 * events.emit('tick', { n: 1 });
 * off();
 * ```
 */
export class TypedEventEmitter<M extends Record<string, unknown>> {
  // Arrays are replaced, never mutated, so that an emit in progress iterates a stable snapshot.
  readonly #listeners = new Map<keyof M, ReadonlyArray<EventListener<M, keyof M>>>();
  readonly #onListenerError: (error: unknown, event: string) => void;

  /** @param options - where listener errors go */
  constructor(options: TypedEventEmitterOptions = {}) {
    this.#onListenerError = options.onListenerError ?? warnListenerError;
  }

  /**
   * Adds a listener.
   *
   * @param name - the event
   * @param listener - called with each payload
   * @returns a function that removes this listener (calling it twice does nothing)
   */
  on<K extends keyof M>(name: K, listener: EventListener<M, K>): () => void {
    const current = this.#listeners.get(name) ?? [];
    this.#listeners.set(name, [...current, listener as EventListener<M, keyof M>]);
    return () => this.off(name, listener);
  }

  /**
   * Removes a listener added with {@link TypedEventEmitter.on}; does nothing when it is not there.
   *
   * @param name - the event
   * @param listener - the listener to remove (its first registration)
   */
  off<K extends keyof M>(name: K, listener: EventListener<M, K>): void {
    const current = this.#listeners.get(name);
    if (current === undefined) return;
    const index = current.indexOf(listener as EventListener<M, keyof M>);
    if (index < 0) return;
    const next = [...current.slice(0, index), ...current.slice(index + 1)];
    if (next.length === 0) this.#listeners.delete(name);
    else this.#listeners.set(name, next);
  }

  /**
   * Waits for the next emit of an event.
   *
   * @param name - the event
   * @param signal - optional: aborting it rejects the promise with the signal's reason and removes the listener
   * @returns the payload of the next emit
   */
  once<K extends keyof M>(name: K, signal?: AbortSignal): Promise<M[K]> {
    return new Promise<M[K]>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = (): void => {
        off();
        reject(signal?.reason as Error);
      };
      const off = this.on(name, (payload) => {
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve(payload);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Whether the event has at least one listener; emitters use it to skip building payloads nobody reads.
   *
   * @param name - the event
   * @returns true when a listener is registered
   */
  hasListeners(name: keyof M): boolean {
    // The common case on hot paths (a scheduler nobody watches) answers without hashing the name.
    return this.#listeners.size !== 0 && this.#listeners.has(name);
  }

  /**
   * Calls every listener of `name` with `payload`. Never throws: a listener's error goes to `onListenerError`.
   *
   * @param name - the event
   * @param payload - its payload
   */
  emit<K extends keyof M>(name: K, payload: M[K]): void {
    const listeners = this.#listeners.get(name);
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener(payload);
      } catch (error) {
        try {
          this.#onListenerError(error, String(name));
        } catch {
          // The error handler itself failed: there is nowhere left to report to, and emit must not throw.
        }
      }
    }
  }
}
