// The Fleet resource in a preview (`pulumi preview`, or the preview step of
// `pulumi up`), under Pulumi's mocks: a spec key computed from another
// resource is not known yet, and only that key may be unknown in what the
// engine receives. The provider's diff decides a replace of the whole fleet
// (every member deleted first) on the name alone (unknowns.test.ts).
import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { specHash } from '../../engine/spec/index.ts';
import { valueOf } from '../../packages/dmz-infra/testing.ts';
import { Fleet } from './fleet.ts';
import { TEST_FLEET_STACK } from './testing.ts';

const declared: { type: string; inputs: Record<string, unknown> }[] = [];
// A preview: a resource's id is not known until it is created (the mocks answer none for `test:` resources).
void pulumi.runtime.setMocks(
  {
    newResource: (a) => {
      declared.push({ type: a.type, inputs: a.inputs });
      return { id: a.type.startsWith('test:') ? (undefined as unknown as string) : `${a.name}-id`, state: a.inputs };
    },
    call: (a) => a.inputs,
  },
  'fleets',
  'dev',
  true,
);

class Made extends pulumi.CustomResource {
  declare readonly id: pulumi.Output<string>;
  constructor(name: string) {
    super('test:index:Made', name, {});
  }
}

const stack = TEST_FLEET_STACK;

describe('a Fleet whose count another resource computes, in a preview', () => {
  // Found by QA: the resource passed its spec through one apply, so one key not known in a preview made the whole
  // spec (and its hash) unknown; the provider's diff then saw no name and answered a replace of the fleet, every
  // member deleted first, in the preview of what is a count change.
  it('sends only that key unknown: the name, the other keys and the spec hash stay known', async () => {
    const made = new Made('sizer');
    const size = { cpu: 1, memoryGiB: 2, diskGiB: 10 };
    const fleet = new Fleet('web', { stack, spec: { owner: 'team-payments', count: made.id.apply(() => 3), image: 'ubuntu-22.04', size } });
    await valueOf(fleet.urn);
    const r = declared.find((x) => x.type === 'pulumi-nodejs:dynamic/dmzfleet:Fleet')!;
    const spec = r.inputs.spec as Record<string, unknown>;
    expect(pulumi.isUnknown(spec)).toBe(false);
    expect(spec).toMatchObject({ name: 'web', owner: 'team-payments', image: 'ubuntu-22.04', size });
    expect(pulumi.isUnknown(spec.count)).toBe(true);
    expect(r.inputs.specHash).toBe(specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: false }));
  });

  it('a spec given as one output is passed as it is, its name defaulting to the resource\'s', async () => {
    const fleet = new Fleet('api', { stack, spec: pulumi.output({ owner: 'team-payments', count: 1, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 } }) });
    await valueOf(fleet.urn);
    const r = declared.filter((x) => x.type === 'pulumi-nodejs:dynamic/dmzfleet:Fleet').at(-1)!;
    expect(r.inputs.spec).toMatchObject({ name: 'api', count: 1 });
  });
});
