// Every format diskpipe knows, in probe order; raw is last because it accepts anything.
// Only raw is loaded up front: a format's reader loads when an image of it is opened (its
// probe is a few small modules), so `convert disk.raw` never pays for qcow2's 40 modules.
import { hasQcowMagic } from './qcow2/header.js';
import { qedProbe } from './qed/probe.js';
import { rawDriver } from './raw.js';
import { refusedDrivers } from './refused.js';
import { lazyDriver, registerFormat } from './registry.js';
import { vdiProbe } from './vdi/probe.js';
import { vhdAliasProbe, vpcProbe } from './vhd/probe.js';
import { vhdxProbe } from './vhdx/probe.js';
import { vmdkProbe } from './vmdk/probe.js';

registerFormat(
  lazyDriver(
    { name: 'qcow2', probe: (head) => hasQcowMagic(head) },
    async () => (await import('./qcow2/index.js')).qcow2Driver,
  ),
);
registerFormat(lazyDriver(vpcProbe, async () => (await import('./vhd/index.js')).vpcDriver));
registerFormat(
  lazyDriver(vhdAliasProbe, async () => (await import('./vhd/index.js')).vhdAliasDriver),
);
registerFormat(lazyDriver(vhdxProbe, async () => (await import('./vhdx/index.js')).vhdxDriver));
registerFormat(lazyDriver(qedProbe, async () => (await import('./qed/index.js')).qedDriver));
registerFormat(lazyDriver(vmdkProbe, async () => (await import('./vmdk/index.js')).vmdkDriver));
registerFormat(lazyDriver(vdiProbe, async () => (await import('./vdi/index.js')).vdiDriver));
for (const d of refusedDrivers) registerFormat(d);
registerFormat(rawDriver);
