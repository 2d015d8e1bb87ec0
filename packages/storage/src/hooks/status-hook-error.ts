import { HoraeError, InvalidInputError, type HoraeErrorOptions } from '@horae/core';

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

/**
 * A status hook's URL was refused at configuration: not a URL, not http(s), or carrying a username or password.
 * Credentials in the URL are refused because fetch refuses such URLs (every POST would fail) and because the URL
 * ends up in error messages; put them in `headers` (an `authorization` header) instead. The message never quotes
 * the password.
 */
export class StatusHookUrlError extends InvalidInputError {
  /** What was wrong with the URL. */
  readonly reason: 'invalid' | 'protocol' | 'credentials';

  /**
   * @param message - what was wrong, without the URL's credentials
   * @param reason - the kind of problem
   * @param options - the parse error as `cause`, when there was one
   */
  constructor(message: string, reason: 'invalid' | 'protocol' | 'credentials', options?: HoraeErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}
