import { HoraeError, type HoraeErrorOptions } from '@horae/core';

/** Options of {@link StatusHookDeliveryError}. */
export interface StatusHookDeliveryErrorOptions extends HoraeErrorOptions {
  /** The HTTP status the receiver answered, when it answered. */
  status?: number;
  /** Whether another attempt may succeed (network error, timeout, 408, 425, 429, 5xx). */
  retryable: boolean;
}

/**
 * One POST of a status hook failed: the receiver answered a non-2xx status, did not answer within
 * `timeoutMs`, or could not be reached (the fetch error is the `cause`). Reported in the
 * `hook:retrying` and `hook:failed` events; never thrown to the code that calls `notify`.
 */
export class StatusHookDeliveryError extends HoraeError {
  /** The HTTP status the receiver answered, or undefined when no answer came. */
  readonly status: number | undefined;
  /** Whether the sender retries after this error (when attempts are left). */
  readonly retryable: boolean;

  /**
   * @param message - what failed
   * @param options - the HTTP status, whether it is retryable, and the underlying `cause`
   */
  constructor(message: string, options: StatusHookDeliveryErrorOptions) {
    super('HOOK_DELIVERY_FAILED', message, options);
    this.status = options.status;
    this.retryable = options.retryable;
  }
}
