/**
 * The events of durable status hook delivery (the outbox): what the enqueue and the delivery loops report.
 */
import type { StatusHookPayload } from './hook-payload.js';
import type { StatusHookDeliveryError } from './status-hook-error.js';

/** Which delivery an event is about. */
export interface HookDeliveryRef {
  /** The hook's name. */
  hook: string;
  /** The delivery id (`webhook-id`). */
  deliveryId: string;
  /** The task the change is about. */
  taskId: string;
  /** POSTs claimed so far, this one included. */
  attempts: number;
}

// A type alias, not an interface: TypedEventEmitter needs an event map that is assignable to a string-keyed record.
/** The events of durable status hooks (`horae.hookEvents`). */
export type DurableHookEvents = {
  /** The receiver answered 2xx; the row is deleted. */
  'hook:delivered': HookDeliveryRef & { status: number };
  /** A POST failed; the row waits `delayMs` (on the database clock) for its next try, on any node. */
  'hook:retrying': HookDeliveryRef & { error: StatusHookDeliveryError; delayMs: number };
  /** A POST failed for good (attempts spent, or a status not worth retrying): the row is a dead letter. */
  'hook:dead': HookDeliveryRef & { error: StatusHookDeliveryError };
  /** A read or write of the outbox failed (the database is down, say); it is tried again later. */
  'hook:outbox-error': { operation: string; error: unknown; retryInMs: number | undefined };
  /**
   * A change never reached the outbox: the buffer of changes waiting for their enqueue was full (the oldest is
   * dropped) or the node stopped before the database took it.
   */
  'hook:dropped': { change: StatusHookPayload; reason: 'buffer-full' | 'closed' };
};
