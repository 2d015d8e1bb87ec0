/**
 * Waiting, in real time, for a condition that real I/O makes true (a POST arriving, a row written by another process,
 * the database's clock passing a time): for tests of real components, where there is no virtual clock to advance.
 */

/** How long {@link waitUntil} waits, and how often it looks. */
export interface WaitUntilOptions {
  /** Gives up after this long. @defaultValue 5000 */
  timeoutMs?: number;
  /** Looks again after this long. @defaultValue 10 */
  everyMs?: number;
}

/**
 * Resolves once `condition` holds, looking every `everyMs`.
 *
 * @throws Error naming `what` when it still does not hold after `timeoutMs`
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, options: WaitUntilOptions = {}): Promise<void> {
  const { timeoutMs = 5000, everyMs = 10 } = options;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
