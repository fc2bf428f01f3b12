/**
 * The backing file of an image opened only to be described (`info`), when the trust rule
 * refuses it: it stands in the chain so the image itself can be shown, names the refusal,
 * and fails any read rather than pretending to hold zeroes.
 */
import { UntrustedReferenceError } from '../errors.js';
import { BaseImage } from './base.js';

export class RefusedBacking extends BaseImage {
  readonly format = 'refused';
  readonly size = 0;

  constructor(
    /** The reference as written in the image. */
    readonly reference: string,
    /** Why the trust rule refused it (the error's message). */
    readonly reason: string,
  ) {
    super();
  }

  protected readAt(): Promise<void> {
    return Promise.reject(new UntrustedReferenceError(this.reason));
  }

  async close(): Promise<void> {}
}
