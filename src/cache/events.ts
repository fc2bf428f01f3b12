/**
 * What the cache tells its caller besides progress: the library never writes to stderr, the
 * caller decides what to show (the CLI prints a line while it waits for another diskpipe).
 */
export type CacheEvent =
  /** Another process holds the lock on this URL (a pull) or this disk (a createDisk). */
  | { type: 'waiting'; lock: 'url' | 'disk'; name: string }
  /** The converted image is complete and about to be moved into the cache. */
  | { type: 'publishing'; url: string }
  /**
   * The URL is cached, but its server sent no ETag or Last-Modified to ask whether it changed:
   * it is downloaded again (a digest, or offline, would use the cached copy).
   */
  | { type: 'refetching'; url: string };

export type CacheEventListener = (event: CacheEvent) => void;
