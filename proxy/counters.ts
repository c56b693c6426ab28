/**
 * Per-binding counters, shaped for a status endpoint. "In" is client → backend, "out" is
 * backend → client; byte counts are payload only (a PROXY header is not counted).
 */
export interface ProxyCounters {
  /** TCP connections accepted / UDP flows opened, since the binding was added. */
  connectionsTotal: number;
  /** TCP connections / UDP flows open now. */
  connectionsActive: number;
  bytesIn: number;
  bytesOut: number;
  /** UDP only (0 for TCP). */
  datagramsIn: number;
  datagramsOut: number;
  /** UDP datagrams not forwarded (flow table full, queue full while the flow connects, send failed). */
  dropped: number;
  /** Backend connect failures and timeouts, socket errors on either side, UDP send/receive errors. */
  errors: number;
  /** Bytes held in user space right now (queued writes and unread stream buffers); TCP only. */
  bufferedBytes: number;
  /** TCP connections reset at accept / new UDP flows dropped: the binding's limit was reached. */
  refusedPortLimit: number;
  /** TCP connections reset at accept: their source's limit was reached (UDP evicts instead). */
  refusedSourceLimit: number;
  /** UDP flows closed to make room: the oldest one the backend had not answered, when the binding's table was full. */
  evictedPortLimit: number;
  /** UDP flows closed to make room: a source's own oldest, when it reached its limit. */
  evictedSourceLimit: number;
  /** TCP connections closed after the idle timeout with no byte either way. */
  idleTimeouts: number;
}

export function newCounters(): ProxyCounters {
  return {
    connectionsTotal: 0,
    connectionsActive: 0,
    bytesIn: 0,
    bytesOut: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    dropped: 0,
    errors: 0,
    bufferedBytes: 0,
    refusedPortLimit: 0,
    refusedSourceLimit: 0,
    evictedPortLimit: 0,
    evictedSourceLimit: 0,
    idleTimeouts: 0,
  };
}
