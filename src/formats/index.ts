// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
import { qedDriver } from './qed/index.js';
import { rawDriver } from './raw.js';
import { registerFormat } from './registry.js';
import { vhdAliasDriver, vpcDriver } from './vhd/index.js';
import { vhdxDriver } from './vhdx/index.js';

registerFormat(vpcDriver);
registerFormat(vhdAliasDriver);
registerFormat(vhdxDriver);
registerFormat(qedDriver);
registerFormat(rawDriver);
