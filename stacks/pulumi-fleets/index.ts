// `pulumi up` in this folder: fleets as Pulumi resources against an existing dmzfleet stack (program.ts).
import { declareFleets, readConfig } from './program.ts';

const { web, batch } = await declareFleets(readConfig());
/** Each member: address, data center, VM id, state. */
export const webMembers = web.members.apply((ms) => ms.map((m) => ({ address: m.address, dataCenter: m.dataCenter, vmId: m.vmId, state: m.state })));
export const batchMembers = batch.members.apply((ms) => ms.map((m) => ({ address: m.address, dataCenter: m.dataCenter, vmId: m.vmId, state: m.state })));
