// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
import { qcow2Driver } from './qcow2/index.js';
import { qedDriver } from './qed/index.js';
import { rawDriver } from './raw.js';
import { refusedDrivers } from './refused.js';
import { registerFormat } from './registry.js';
import { vdiDriver } from './vdi/index.js';
import { vhdAliasDriver, vpcDriver } from './vhd/index.js';
import { vhdxDriver } from './vhdx/index.js';
import { vmdkDriver } from './vmdk/index.js';

registerFormat(qcow2Driver);
registerFormat(vpcDriver);
registerFormat(vhdAliasDriver);
registerFormat(vhdxDriver);
registerFormat(qedDriver);
registerFormat(vmdkDriver);
registerFormat(vdiDriver);
for (const d of refusedDrivers) registerFormat(d);
registerFormat(rawDriver);
