/**
 * Group commit: calls made in the same tick of the event loop (and, when asked, while an earlier batch is in
 * flight) are gathered and sent as one statement, and each caller is answered with its own result.
 */

/** How a {@link Batcher} groups items. */
export interface BatcherOptions<I> {
  /**
   * Runs one batch; answers each item, in input order, with its result or the error to reject it with. A
   * rejection of the whole call rejects every item of the batch.
   */
  run(items: readonly I[]): Promise<readonly unknown[]>;
  /** Items of different groups never share a batch. @defaultValue one group */
  groupOf?(item: I): string;
  /** Two items with the same identity never share a batch (so a per-row result is never ambiguous). */
  identityOf?(item: I): string;
  /** The weight of an item; a batch holds at most `maxWeight` (an item heavier than that goes alone). @defaultValue 1 */
  weightOf?(item: I): number;
  /** The most weight one batch carries. */
  maxWeight: number;
  /**
   * Items added while a batch of this batcher is in flight wait for it to be answered, and are then sent together:
   * under a steady load each round trip carries everything that arrived during the previous one, rather than each
   * tick sending its own small statement beside the others. The cost is latency for an item that arrives just
   * after a batch left: at most one round trip more. @defaultValue false (every tick sends its own batches)
   */
  holdWhileInFlight?: boolean;
}

interface Pending<I> {
  item: I;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Gathers the items added during one tick (and, with `holdWhileInFlight`, while a batch is in flight) and runs them
 * in as few batches as the options allow.
 *
 * Rules: every added item is answered exactly once, with its own entry of its batch's result; with
 * `holdWhileInFlight`, no batch is sent while another of this batcher is in flight, and an item waits for at most the
 * batches in flight when it was added.
 */
export class Batcher<I, R> {
  readonly #options: BatcherOptions<I>;
  #pending: Pending<I>[] = [];
  #scheduled = false;
  readonly #inFlight = new Set<Promise<void>>();

  /** @param options - how to run and group batches */
  constructor(options: BatcherOptions<I>) {
    this.#options = options;
  }

  /**
   * Queues an item for the next batch.
   *
   * @returns its result once its batch has run
   */
  add(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#pending.push({ item, resolve: (value) => resolve(value as R), reject });
      this.#schedule();
    });
  }

  /** Arranges the next flush, unless one is arranged or (with holdWhileInFlight) a batch in flight will arrange it. */
  #schedule(): void {
    if (this.#scheduled || (this.#options.holdWhileInFlight === true && this.#inFlight.size > 0)) return;
    this.#scheduled = true;
    // setImmediate, not a microtask: callers woken by the same I/O event all get to add their item first.
    setImmediate(() => this.#flush());
  }

  /** Resolves once every batch sent so far has been answered. */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0 || this.#pending.length > 0) {
      if (this.#pending.length > 0 && !this.#scheduled) this.#flush();
      await Promise.allSettled([...this.#inFlight]);
      if (this.#pending.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = [];
    for (const batch of this.#partition(pending)) {
      const sent = this.#send(batch);
      this.#inFlight.add(sent);
      void sent.finally(() => {
        this.#inFlight.delete(sent);
        // The items held while this batch was in flight go now, together.
        if (this.#pending.length > 0) this.#schedule();
      });
    }
  }

  #partition(pending: readonly Pending<I>[]): Pending<I>[][] {
    const options = this.#options;
    const open = new Map<string, { items: Pending<I>[]; ids: Set<string>; weight: number }[]>();
    const done: Pending<I>[][] = [];
    for (const entry of pending) {
      const group = options.groupOf?.(entry.item) ?? '';
      const id = options.identityOf?.(entry.item);
      const weight = options.weightOf?.(entry.item) ?? 1;
      let batches = open.get(group);
      if (batches === undefined) open.set(group, (batches = []));
      let target = batches.find((b) => b.weight + weight <= options.maxWeight && (id === undefined || !b.ids.has(id)));
      if (target === undefined) {
        target = { items: [], ids: new Set(), weight: 0 };
        batches.push(target);
      }
      target.items.push(entry);
      target.weight += weight;
      if (id !== undefined) target.ids.add(id);
    }
    for (const batches of open.values()) for (const b of batches) done.push(b.items);
    return done;
  }

  async #send(batch: readonly Pending<I>[]): Promise<void> {
    try {
      const results = await this.#options.run(batch.map((p) => p.item));
      batch.forEach((p, i) => {
        const result = results[i];
        if (result instanceof Error) p.reject(result);
        else p.resolve(result);
      });
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }
}
