// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
import { qcow2Driver } from './qcow2/index.js';
import { rawDriver } from './raw.js';
import { registerFormat } from './registry.js';

registerFormat(qcow2Driver);
registerFormat(rawDriver);
