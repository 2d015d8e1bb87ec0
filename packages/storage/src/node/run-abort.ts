import { isWorkAborted, type WorkContext } from '@horae/core';

/**
 * The abort of one run as storage hands it to the work: aborted by the core's own signal of the run (a cancel, a
 * stop past its deadline), by a lost lease, or by a timeout or stall; the first abort's reason is the run's.
 *
 * Why not a plain AbortController listening on the core's signal: a controller and a listener on the core's signal
 * (which then builds its own controller) cost two AbortSignals, an add and a remove of a listener a run, ~3 µs of
 * CPU and their garbage, for a signal most works never read. The controller is built on the first read of `signal`;
 * until then an abort of storage's is remembered (behind one of the core's that came first), and the core's is read
 * without building its signal ({@link isWorkAborted}).
 */
export class RunAbort {
  readonly #outer: WorkContext;
  #controller: AbortController | undefined = undefined;
  #forward: (() => void) | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  /** @param outer - the context the run received from the core (or the middleware inside storage) */
  constructor(outer: WorkContext) {
    this.#outer = outer;
  }

  /** The signal the work sees: built on the first read, forwarding the core's aborts from then on. */
  get signal(): AbortSignal {
    if (this.#controller !== undefined) return this.#controller.signal;
    const controller = new AbortController();
    this.#controller = controller;
    const outer = this.#outer.signal;
    if (this.#aborted) controller.abort(this.#reason);
    else if (outer.aborted) controller.abort(outer.reason);
    else {
      this.#forward = (): void => controller.abort(outer.reason);
      outer.addEventListener('abort', this.#forward, { once: true });
    }
    return controller.signal;
  }

  /** Aborts the run with `reason`, unless it was aborted already (by storage or the core). */
  abort(reason: unknown): void {
    if (this.#controller !== undefined) {
      this.#controller.abort(reason);
      return;
    }
    if (this.#aborted) return;
    this.#aborted = true;
    // The core's abort came first: its reason stays the run's, as it would have been forwarded first.
    this.#reason = isWorkAborted(this.#outer) ? this.#outer.signal.reason : reason;
  }

  /**
   * Stops forwarding the core's aborts (the run ended).
   * @returns the reason of the first abort, or undefined when the run was not aborted
   */
  end(): unknown {
    const controller = this.#controller;
    if (controller !== undefined) {
      if (this.#forward !== undefined) this.#outer.signal.removeEventListener('abort', this.#forward);
      return controller.signal.aborted ? controller.signal.reason : undefined;
    }
    if (this.#aborted) return this.#reason;
    return isWorkAborted(this.#outer) ? this.#outer.signal.reason : undefined;
  }
}

