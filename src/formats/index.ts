// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
import { rawDriver } from './raw.js';
import { refusedDrivers } from './refused.js';
import { registerFormat } from './registry.js';
import { vdiDriver } from './vdi/index.js';
import { vmdkDriver } from './vmdk/index.js';

registerFormat(rawDriver);
registerFormat(vmdkDriver);
registerFormat(vdiDriver);
for (const d of refusedDrivers) registerFormat(d);
