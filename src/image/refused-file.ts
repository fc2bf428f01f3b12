/**
 * A file an image references (a vmdk extent, a qcow2 data file) that the trust rule refused,
 * when the image is opened only to be described (`info`): it holds the file's place so the
 * image can be shown, names the refusal, and fails any read.
 */
import { UntrustedReferenceError } from '../errors.js';
import type { ByteSource } from './types.js';

export class RefusedFile implements ByteSource {
  readonly size = 0;

  constructor(
    /** The reference as written in the image. */
    readonly name: string,
    /** Why the trust rule refused it (the error's message). */
    readonly reason: string,
  ) {}

  read(): Promise<number> {
    return Promise.reject(new UntrustedReferenceError(this.reason));
  }

  /** Nothing of it is counted in `info`'s disk size. */
  async allocatedSize(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {}
}
