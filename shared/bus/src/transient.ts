import {
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { JetStreamApiError } from "@nats-io/jetstream";

/** JetStream API statuses that pass with time: a request timed out, the system is electing a leader. */
const TRANSIENT_API_STATUS = new Set([408, 503]);
/** How deep to follow `cause` chains (RequestError wraps NoRespondersError, ...). */
const MAX_CAUSE_DEPTH = 4;

/**
 * Does `e` come from the bus being briefly unreachable: a request that timed out, no
 * responder (a stream or bucket whose leader is being elected after a node was lost), a
 * connection that dropped or is draining, a JetStream API 408/503? Such a failure passes
 * with time, so a handler that meets it is retried (nak) instead of its message being
 * refused. Classified by class and status code, never by message text.
 */
export function isTransientBusError(e: unknown, depth = 0): boolean {
  if (
    e instanceof TimeoutError ||
    e instanceof NoRespondersError ||
    e instanceof ConnectionError ||
    e instanceof DrainingConnectionError
  )
    return true;
  if (e instanceof JetStreamApiError) return TRANSIENT_API_STATUS.has(e.status);
  if (e instanceof RequestError && e.isNoResponders()) return true;
  const cause = (e as { cause?: unknown } | null)?.cause;
  return depth < MAX_CAUSE_DEPTH && cause !== undefined && isTransientBusError(cause, depth + 1);
}
