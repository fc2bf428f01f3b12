// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
import { rawDriver } from './raw.js';
import { registerFormat } from './registry.js';

registerFormat(rawDriver);
