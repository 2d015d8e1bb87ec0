import type { DurableWriter } from './durable-write.js';
import { LeaseLostError, TaskNotFoundError } from '../contract/errors.js';

/** The result of a write that may be refused because the lease was lost. */
export type Fenced<T> = { ok: true; value: T } | { ok: false; error: LeaseLostError | TaskNotFoundError };

/**
 * A write that carries the lease token: an outage is retried; a refusal means this node is a zombie.
 * @param durable - the writer that retries it through an outage
 * @returns the write's value, or the refusal (the lease was lost, or the task deleted)
 * @throws what the write threw otherwise
 */
export async function fenced<T>(durable: DurableWriter, operation: string, taskId: string, call: () => Promise<T>): Promise<Fenced<T>> {
  try {
    return { ok: true, value: await durable.run(operation, taskId, call) };
  } catch (error) {
    if (error instanceof LeaseLostError || error instanceof TaskNotFoundError) return { ok: false, error };
    throw error;
  }
}
