/** An extent whose file the trust rule refused (`info` only): it describes, and fails reads. */
import { UntrustedReferenceError } from '../../errors.js';
import type { RefusedFile } from '../../image/refused-file.js';
import type { Run, VmdkExtent } from './extent.js';

export class RefusedExtent implements VmdkExtent {
  readonly clusterSize = undefined;
  readonly compressed = false;

  constructor(
    readonly type: string,
    readonly size: number,
    readonly file: RefusedFile,
  ) {}

  runs(): AsyncIterable<Run> {
    const refusal = () => Promise.reject(new UntrustedReferenceError(this.file.reason));
    return { [Symbol.asyncIterator]: () => ({ next: refusal }) };
  }

  read(): Promise<void> {
    return Promise.reject(new UntrustedReferenceError(this.file.reason));
  }
}
