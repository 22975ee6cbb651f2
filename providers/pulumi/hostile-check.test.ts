// check on hostile or malformed inputs (wrong types, out-of-range numbers,
// names with line breaks or characters that do not show, huge strings,
// secrets): Pulumi shows a check failure as `property: reason`, so each must
// name the property, its reason must read on one line and stay short (a value
// quoted clipped, its unseen characters escaped), never echo a token, and
// check must never throw.
//
// The Vm's check took a fleet name with a line break or a zero-width space, a
// 100 000-character fleet, owner or image, a fractional or billion-CPU size,
// an index past any fleet, a numeric planId or token: each went on to the
// create, to be refused by the DMZ client's schema or the authority, or (a
// fleet name with a line break) into the record. The Fleet's check quoted a
// huge or multi-line value whole in its reason (its name, an unknown key, a
// data center, an image), and took tokens, planId and managedBy of any type.
import { describe, expect, it } from 'vitest';
import { specHash } from '../../engine/spec/index.ts';
import type { FleetSpecInputs } from './fleet.ts';
import { FleetProvider } from './fleet.ts';
import { TEST_FLEET_STACK } from './testing.ts';
import { VmProvider, type VmResourceInputs } from './vm.ts';
import { providerOptions } from './stack.ts';

const size = { cpu: 2, memoryGiB: 4, diskGiB: 20 };
const hash = specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: true });
const HUGE = 'a'.repeat(100_000);
const TOKEN = 'tok-3f9c1e7a-secret-value';

const VM: VmResourceInputs = {
  stack: 'prod',
  fleet: 'web',
  owner: 'team-payments',
  index: 0,
  name: 'prod-web-0',
  image: 'ubuntu-22.04',
  size,
  encryptedDisk: true,
  desiredState: 'Running',
  specHash: hash,
  planId: null,
  managedBy: 'pulumi:proj/dev',
  token: TOKEN,
};

/** Every reason a person can read: one line, short, no character that does not show, no token. */
function expectReadable(failures: { property: string; reason: string }[]): void {
  for (const f of failures) {
    for (const text of [f.property, f.reason]) {
      expect(text).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u);
      expect(text).not.toContain(TOKEN);
    }
    expect(f.property.length).toBeLessThanOrEqual(200);
    expect(f.reason.length).toBeLessThanOrEqual(1_000);
  }
}

describe('Vm check on hostile inputs', () => {
  const p = new VmProvider(providerOptions(TEST_FLEET_STACK, 'miami'), Object.keys(TEST_FLEET_STACK.images));
  it.each<[string, Record<string, unknown>, string]>([
    ['a fleet name with a line break', { fleet: 'web\nx', name: 'prod-web\nx-0' }, 'fleet'],
    ['a fleet name with a zero-width space', { fleet: 'we\u200bb', name: 'prod-we\u200bb-0' }, 'fleet'],
    ['a fleet name in capitals', { fleet: 'Web', name: 'prod-Web-0' }, 'fleet'],
    ['a huge fleet name', { fleet: HUGE, name: `prod-${HUGE}-0` }, 'fleet'],
    ['a fleet name that is a number', { fleet: 5 }, 'fleet'],
    ['a huge owner', { owner: HUGE }, 'owner'],
    ['an owner with a line break', { owner: 'team\npayments' }, 'owner'],
    ['an image not in the catalog', { image: 'debian-12' }, 'image'],
    ['a huge image', { image: HUGE }, 'image'],
    ['an image with a line break', { image: 'ubuntu-22.04\n' }, 'image'],
    ['a negative index', { index: -1 }, 'index'],
    ['an index past any fleet', { index: 2 ** 40 }, 'index'],
    ['an index that is a string', { index: '1' }, 'index'],
    ['a name other than the member\'s', { name: 'prod-api-0' }, 'name'],
    ['a size that is null', { size: null }, 'size'],
    ['a size that is a string', { size: 'big' }, 'size'],
    ['a fractional cpu', { size: { ...size, cpu: 1.5 } }, 'size'],
    ['a billion cpus', { size: { ...size, cpu: 1e9 } }, 'size'],
    ['a cpu that is a string', { size: { ...size, cpu: '2' } }, 'size'],
    ['a negative disk', { size: { ...size, diskGiB: -20 } }, 'size'],
    ['a size key of no size', { size: { ...size, gpu: 1 } }, 'size'],
    ['a planId that is a number', { planId: 5 }, 'planId'],
    ['a huge planId', { planId: HUGE }, 'planId'],
    ['a token that is a number', { token: 5 }, 'token'],
    ['a token with a line break', { token: `${TOKEN}\n` }, 'token'],
    ['a desired state that is a number', { desiredState: 5 }, 'desiredState'],
    ['a huge desired state', { desiredState: HUGE }, 'desiredState'],
    ['a desired state with a line break', { desiredState: 'Running\n' }, 'desiredState'],
    ['encryptedDisk as a string', { encryptedDisk: 'yes' }, 'encryptedDisk'],
    ['a managedBy that is a number', { managedBy: 5 }, 'managedBy'],
    ['a huge managedBy', { managedBy: HUGE }, 'managedBy'],
  ])('%s: a check failure, no throw', async (_what, over, property) => {
    const failures = (await p.check({} as VmResourceInputs, { ...VM, ...over } as VmResourceInputs)).failures ?? [];
    expect(failures.map((f) => f.property)).toContain(property);
    expectReadable(failures);
  });

  it('the valid inputs pass', async () => {
    expect((await p.check({} as VmResourceInputs, VM)).failures).toEqual([]);
  });
});

describe('Fleet check on hostile inputs', () => {
  const p = new FleetProvider(TEST_FLEET_STACK);
  const spec: FleetSpecInputs = { name: 'web', owner: 'team-payments', count: 1, image: 'ubuntu-22.04', size };
  it.each<[string, Record<string, unknown>, string]>([
    ['a name with a line break', { spec: { ...spec, name: 'web\nx' } }, 'spec.name'],
    ['a huge name', { spec: { ...spec, name: HUGE } }, 'spec.name'],
    ['a huge key of no spec', { spec: { ...spec, [HUGE]: 1 } }, `spec.${'a'.repeat(100)}`],
    ['a key with a line break', { spec: { ...spec, 'co\nunt': 1 } }, 'spec.co\\u000Aunt'],
    ['a huge image', { spec: { ...spec, image: HUGE } }, 'spec.image'],
    ['an image with a right-to-left override', { spec: { ...spec, image: 'ubu\u202entu' } }, 'spec.image'],
    ['a huge data center', { spec: { ...spec, placement: { dataCenters: [HUGE] } } }, 'spec.placement.dataCenters'],
    ['a data center with a line break', { spec: { ...spec, placement: { dataCenters: ['miami\n'] } } }, 'spec.placement.dataCenters'],
    ['a huge near', { spec: { ...spec, placement: { near: HUGE } } }, 'spec.placement.near'],
    ['a huge hardware trait', { spec: { ...spec, hardware: [HUGE] } }, 'spec.hardware'],
    ['a huge state', { spec: { ...spec, state: HUGE } }, 'spec.state'],
    ['a state that is an object', { spec: { ...spec, state: { x: 1 } } }, 'spec.state'],
    ['a huge label key', { spec: { ...spec, labels: { [HUGE]: 'x' } } }, `spec.labels.${'a'.repeat(100)}`],
    ['a tokens entry that is a number', { tokens: { miami: 5 } }, 'tokens'],
    ['a token with a line break', { tokens: { miami: `${TOKEN}\n` } }, 'tokens'],
    ['tokens of a huge data center', { tokens: { [HUGE]: TOKEN } }, 'tokens'],
    ['a planId that is a number', { planId: 5 }, 'planId'],
    ['a huge planId', { planId: HUGE }, 'planId'],
    ['a managedBy that is a number', { managedBy: 5 }, 'managedBy'],
  ])('%s: a check failure, no throw', async (_what, over, property) => {
    const failures = (await p.check(undefined as never, { spec, specHash: hash, ...over } as never)).failures ?? [];
    expect(failures.map((f) => f.property.replace(/….*$/u, ''))).toContain(property);
    expectReadable(failures);
  });

  it.each([
    ['no olds', undefined],
    ['olds whose spec is null', { spec: null }],
    ['olds that are a string', 'x'],
  ])('with %s, check does not throw', async (_what, olds) => {
    const r = await p.check(olds as never, { spec, specHash: hash, tokens: { miami: TOKEN } } as never);
    expect(r.failures).toEqual([]);
  });
});
