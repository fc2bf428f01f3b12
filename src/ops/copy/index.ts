export { type CopyResult, copyImage } from './engine.js';
export type { CopyOptions, CopyPhase, CopyProgress } from './options.js';
export { StreamTarget } from './stream-target.js';
