/** Counters a server keeps about its clients, for operators and for tests (no clocks involved). */
export interface NbdServerStats {
  /** Connections accepted. */
  connections: number;
  /** Requests the server worked on (read, wrote, zeroed, ...). */
  requests: number;
  /**
   * Reads, block-status and cache requests dropped unprocessed because their connection had
   * already closed (nobody is left to take the reply). Writes are still applied.
   */
  dropped: number;
  /** Connections closed because the handshake took longer than the handshake timeout. */
  handshakeTimeouts: number;
  /** Connections closed after the idle timeout passed with no request. */
  idleTimeouts: number;
}

export function emptyStats(): NbdServerStats {
  return { connections: 0, requests: 0, dropped: 0, handshakeTimeouts: 0, idleTimeouts: 0 };
}
