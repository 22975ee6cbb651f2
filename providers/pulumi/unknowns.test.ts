// A preview (`pulumi preview`, or the preview step of `pulumi up`) calls check
// with the values a program computes from other resources not known yet:
// Pulumi's dynamic-provider host passes them as one sentinel string. check
// must leave them to be judged once known, not refuse the sentinel itself,
// or the first preview of a program fails on values that will be valid.
import { describe, expect, it } from 'vitest';
import { specHash } from '../../engine/spec/index.ts';
import { FleetProvider, type FleetInputs } from './fleet.ts';
import type { FleetStack } from './stack.ts';

/** What the host passes for a value not known yet (providers/pulumi/fleet.ts UNKNOWN). */
const UNKNOWN = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';
const stack: FleetStack = {
  name: 'prod',
  site: { name: 'charlotte', location: { lat: 35.2, lon: -80.8 } },
  dataCenters: [{ name: 'miami', url: 'https://dmz.miami.example:8443', tokenEnv: 'FLEET_CLI_TOKEN_MIAMI', location: { lat: 25.7, lon: -80.1 }, hardware: ['general'], capacity: {} }],
  lifecycle: { states: ['Requested', 'Running', 'Deleted'], initial: 'Requested', terminal: ['Deleted'], requestable: ['Running'], failure: [], transitions: [{ from: 'Requested', to: 'Running', operation: 'createVm' }, { from: 'Running', to: 'Deleted', operation: 'deleteVm' }] },
  images: { 'ubuntu-22.04': { miami: 'img-1' } },
  capacityEnforcement: 'mandatory',
};
const size = { cpu: 1, memoryGiB: 2, diskGiB: 10 };
const spec = { name: 'web', owner: 'team-payments', count: 2, image: 'ubuntu-22.04', size };
const fleetInputs = (over: Partial<FleetInputs> = {}): FleetInputs => ({ spec, specHash: specHash({ image: spec.image, size, hardware: [], encryptedDisk: false }), ...over });

describe('Fleet check in a preview', () => {
  // Found by QA: tokens computed from another resource (a token the same program makes) are unknown in a
  // preview; check took the sentinel string for the tokens object and refused each of its 36 characters as a
  // data center ("tokens names 0, which is not a data center").
  it.each([
    ['the tokens object', { tokens: UNKNOWN as unknown as Record<string, string> }],
    ['one token', { tokens: { miami: UNKNOWN } }],
    ['the spec hash', { specHash: UNKNOWN }],
  ])('leaves %s not known yet to be judged once known', async (_what, over) => {
    const r = await new FleetProvider(stack).check(fleetInputs(), fleetInputs(over));
    expect(r.failures).toEqual([]);
  });

  it('still refuses a known tokens object naming no data center of the stack', async () => {
    const r = await new FleetProvider(stack).check(fleetInputs(), fleetInputs({ tokens: { nowhere: 't' } }));
    expect(r.failures).toEqual([{ property: 'tokens', reason: expect.stringContaining('tokens names nowhere') }]);
  });
});
