export { type CopyResult, copyImage } from './engine.js';
export type { CopyOptions, CopyTap } from './options.js';
export { StreamTarget } from './stream-target.js';
