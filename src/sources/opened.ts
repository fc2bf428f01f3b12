/** What opening a byte source gives and takes (shared by the scheme openers and their registry). */
import type { ByteSource } from '../image/types.js';
import type { HttpOptions } from './http.js';

export interface OpenedSource {
  source: ByteSource;
  /** Bytes from the network or another untrusted origin: no file references allowed. */
  untrusted: boolean;
}

export interface SourceOptions {
  writable?: boolean;
  /**
   * A local file opened read-only is refused while another program writes it (qemu's write
   * or resize lock is held), as qemu-img does without -U (--force-share). Default: no check.
   */
  refuseWritten?: boolean;
  /** Cache, readahead, retry and timeout settings for http(s):// sources. */
  http?: HttpOptions;
  /** Cancels opening (an NBD handshake, HTTP requests) with an AbortError. */
  signal?: AbortSignal;
}
