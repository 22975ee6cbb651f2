// A preview (`pulumi preview`, or the preview step of `pulumi up`) calls check
// with the values a program computes from other resources not known yet:
// Pulumi's dynamic-provider host passes them as one sentinel string. check
// must leave them to be judged once known, not refuse the sentinel itself,
// or the first preview of a program fails on values that will be valid.
import { describe, expect, it } from 'vitest';
import { specHash } from '../../engine/spec/index.ts';
import { FleetProvider, type FleetInputs, type FleetOutputs } from './fleet.ts';
import { providerOptions } from './stack.ts';
import { TEST_FLEET_STACK } from './testing.ts';
import { VmProvider, type VmResourceInputs } from './vm.ts';
import { PULUMI_UNKNOWN } from '../provider.ts';

/** What the host passes for a value not known yet (providers/pulumi/fleet.ts UNKNOWN). */
const UNKNOWN = PULUMI_UNKNOWN;
const stack = TEST_FLEET_STACK;
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

  it.each([
    ['the state', { state: UNKNOWN }],
    ['minCount', { minCount: UNKNOWN }],
    ['count, with a known minCount', { count: UNKNOWN, minCount: 1 }],
  ])('leaves %s of the spec not known yet to be judged once known', async (_what, over) => {
    const r = await new FleetProvider(stack).check(fleetInputs(), fleetInputs({ spec: { ...spec, ...over } as unknown as FleetInputs['spec'] }));
    expect(r.failures).toEqual([]);
  });

  it('still refuses a known tokens object naming no data center of the stack', async () => {
    const r = await new FleetProvider(stack).check(fleetInputs(), fleetInputs({ tokens: { nowhere: 't' } }));
    expect(r.failures).toEqual([{ property: 'tokens', reason: expect.stringContaining('tokens names "nowhere"') }]);
  });
});

describe('Vm check in a preview', () => {
  const vm: VmResourceInputs = {
    stack: 'prod',
    fleet: 'api',
    owner: 'team-payments',
    index: 0,
    name: 'prod-api-0',
    image: 'ubuntu-22.04',
    size,
    encryptedDisk: false,
    desiredState: 'Running',
    specHash: specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: false }),
    planId: null,
  };
  // Found by QA: Vm's args are pulumi.Inputs (size, image, owner, desiredState, encryptedDisk, fleet), but its
  // check refused the sentinel of a value computed from another resource ("size needs cpu >= 1 ...",
  // "encryptedDisk must be a boolean", "... is not a state a VM may ask for"), so such a program never got past
  // its first preview.
  it.each([
    ['size', { size: UNKNOWN }],
    ['size.cpu', { size: { ...size, cpu: UNKNOWN } }],
    ['encryptedDisk', { encryptedDisk: UNKNOWN }],
    ['desiredState', { desiredState: UNKNOWN }],
    ['owner', { owner: UNKNOWN }],
    ['image and the spec hash', { image: UNKNOWN, specHash: UNKNOWN }],
    ['fleet and the name', { fleet: UNKNOWN, name: UNKNOWN }],
    ['the token', { token: UNKNOWN }],
  ])('leaves %s not known yet to be judged once known', async (_what, over) => {
    const r = await new VmProvider(providerOptions(stack, 'miami')).check(vm, { ...vm, ...over } as unknown as VmResourceInputs);
    expect(r.failures).toEqual([]);
  });

  it.each([
    ['a size below the limits', { size: { cpu: 0, memoryGiB: 2, diskGiB: 10 } }, 'size'],
    ['encryptedDisk that is not a boolean', { encryptedDisk: 'yes' }, 'encryptedDisk'],
    ['a state a VM may not ask for', { desiredState: 'Requested' }, 'desiredState'],
  ])('still refuses %s once known', async (_what, over, property) => {
    const r = await new VmProvider(providerOptions(stack, 'miami')).check(vm, { ...vm, ...over } as unknown as VmResourceInputs);
    expect((r.failures ?? []).map((f) => f.property)).toEqual([property]);
  });
});

// Found by QA: the record keeps a fleet's owner, and only `fleet apply` writes it (FleetRow.owner); the authority
// refuses a create that names another. A program that changed a Fleet's owner saw an update in its preview, then
// `pulumi up` failed on the first new member ("fleet web is owned by team-payments in the record, not team-b"),
// or, with no member to create, kept the old owner on every member under outputs that named the new one.
describe('an owner change of an existing fleet or VM', () => {
  it('Fleet check refuses it, saying why and what to do; a first check (no olds) and the same owner pass', async () => {
    const p = new FleetProvider(stack);
    const olds = fleetInputs();
    const r = await p.check(olds, fleetInputs({ spec: { ...spec, owner: 'team-b' } }));
    expect(r.failures).toEqual([{ property: 'spec.owner', reason: expect.stringMatching(/owner of fleet "web" is "team-payments" in the record.*fleet apply/) }]);
    expect((await p.check(undefined as unknown as FleetInputs, fleetInputs({ spec: { ...spec, owner: 'team-b' } }))).failures).toEqual([]);
    expect((await p.check(olds, fleetInputs({ spec: { ...spec, count: 3 } }))).failures).toEqual([]);
    expect((await p.check(olds, fleetInputs({ spec: { ...spec, owner: UNKNOWN } }))).failures).toEqual([]);
  });

  it('Vm check refuses it too', async () => {
    const vm: VmResourceInputs = { stack: 'prod', fleet: 'api', owner: 'team-payments', index: 0, name: 'prod-api-0', image: 'ubuntu-22.04', size, encryptedDisk: false, desiredState: 'Running', specHash: 'h', planId: null };
    const r = await new VmProvider(providerOptions(stack, 'miami')).check(vm, { ...vm, owner: 'team-b' });
    expect(r.failures).toEqual([{ property: 'owner', reason: expect.stringMatching(/owner of fleet "api" is "team-payments" in the record.*fleet apply/) }]);
  });
});

// Found by QA: a spec key not known in a preview made the Fleet's diff answer a replace (every member deleted
// first) whenever the whole spec was unknown; the name alone decides a replace.
describe('Fleet diff in a preview', () => {
  const outs = (): FleetOutputs => ({ ...fleetInputs(), planId: null, stack: 'prod', members: [] });
  it.each([
    ['count', { count: UNKNOWN }],
    ['the image', { image: UNKNOWN }],
    ['the size', { size: UNKNOWN }],
  ])('a spec whose %s is not known yet is a change, not a replace', async (_what, over) => {
    const r = await new FleetProvider(stack).diff('prod:web', outs(), fleetInputs({ spec: { ...spec, ...over } as unknown as FleetInputs['spec'], specHash: UNKNOWN }));
    expect(r).toMatchObject({ changes: true, replaces: [] });
  });

  it('a name not known yet, or a spec unknown as a whole, may rename the fleet: a replace', async () => {
    const p = new FleetProvider(stack);
    expect(await p.diff('prod:web', outs(), fleetInputs({ spec: { ...spec, name: UNKNOWN } }))).toMatchObject({ changes: true, replaces: ['spec.name'] });
    expect(await p.diff('prod:web', outs(), fleetInputs({ spec: UNKNOWN as unknown as FleetInputs['spec'], specHash: UNKNOWN }))).toMatchObject({ changes: true, replaces: ['spec.name'] });
  });
});
