// The Vm and Fleet resources as a Pulumi program declares them, under Pulumi's
// mocks: what the engine receives (typed inputs, names as the planner names
// members, the token a secret) and the serialized provider with no token in it.
import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { memberName } from '../../engine/plan/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import { mockPulumi, valueOf } from '../../packages/dmz-infra/testing.ts';
import { Vm } from './vm.ts';
import { Fleet } from './fleet.ts';
import { TEST_FLEET_STACK } from './testing.ts';
import { toFleetStack } from './stack.ts';
import type { LoadedStack } from '../../engine/spec/index.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';

const SECRET_SIG = '4dabf18193072939515e22adb298388d';
const SECRET_VALUE = '1b47061264138c4ac30d75fd1eb44270';
const mocks = mockPulumi();
const stack = TEST_FLEET_STACK;

describe('Vm', () => {
  it('sends typed inputs, the member name and spec hash of the planner, the token as a secret, and no token in its provider', async () => {
    const vm = new Vm('api-0', { stack, dataCenter: 'miami', token: 'vm-token-value', fleet: 'api', owner: 'team-payments', index: 0, image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true });
    await valueOf(vm.urn);
    const r = mocks.resources.find((x) => x.type === 'pulumi-nodejs:dynamic/dmzfleet:Vm')!;
    expect(r.inputs).toMatchObject({
      stack: 'prod',
      fleet: 'api',
      index: 0,
      name: memberName('prod', 'api', 0),
      desiredState: 'Running',
      specHash: specHash({ image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, hardware: [], encryptedDisk: true }),
      token: { [SECRET_SIG]: SECRET_VALUE, value: 'vm-token-value' },
    });
    expect(r.inputs.__provider).toContain('https://dmz.miami.example:8443');
    expect(r.inputs.__provider).not.toContain('vm-token-value');
  });

  it('refuses a data center the stack does not have', () => {
    expect(() => new Vm('x', { stack, dataCenter: 'nowhere', fleet: 'api', owner: 'o', index: 0, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 } })).toThrow(/nowhere is not one of stack prod's \(miami\)/);
  });

  it('keeps the token a secret in its outputs too (additionalSecretOutputs)', async () => {
    const vm = new Vm('api-1', { stack, dataCenter: 'miami', token: 'vm-token-value', fleet: 'api', owner: 'o', index: 1, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 } });
    const token = (vm as unknown as { token: pulumi.Output<string> }).token;
    expect(token).toBeDefined();
    expect(await pulumi.isSecret(token)).toBe(true);
  });
});

describe('Fleet', () => {
  it('sends the tokens as one secret, keeps them secret in its outputs, and serializes a provider without them', async () => {
    const fleet = new Fleet('web', { stack, tokens: { miami: 'fleet-token-value' }, spec: { owner: 'team-payments', count: 2, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 } } });
    await valueOf(fleet.urn);
    const r = mocks.resources.find((x) => x.type === 'pulumi-nodejs:dynamic/dmzfleet:Fleet')!;
    expect(r.inputs.tokens).toEqual({ [SECRET_SIG]: SECRET_VALUE, value: { miami: 'fleet-token-value' } });
    expect(r.inputs.spec).toMatchObject({ name: 'web', count: 2 });
    expect(r.inputs.__provider).toContain('https://dmz.miami.example:8443');
    expect(r.inputs.__provider).not.toContain('fleet-token-value');
    const tokens = (fleet as unknown as { tokens: pulumi.Output<unknown> }).tokens;
    expect(await pulumi.isSecret(tokens)).toBe(true);
  });
});

// A DMZ client URL may carry basic auth (user:password@, which the transport sends): the provider each resource
// serializes into the state (`__provider`, clear text) held it whole. Refused when the resource is declared, naming
// the data center and the way out, never the password.
describe('a DMZ client URL with credentials', () => {
  const withCredentials = (url: string) => ({ ...stack, dataCenters: stack.dataCenters.map((d) => ({ ...d, url })) });
  const size = { cpu: 1, memoryGiB: 1, diskGiB: 1 };
  it.each([
    ['user and password', 'https://fleet:pw-s3cret-9d1@dmz.miami.example:8443'],
    ['a user name alone (a token as the user)', 'https://pw-s3cret-9d1@dmz.miami.example:8443'],
  ])('with %s is refused by Vm, Fleet and toFleetStack, naming the data center and not the secret', async (_what, url) => {
    const declare = [
      () => new Vm('cred-vm', { stack: withCredentials(url), dataCenter: 'miami', fleet: 'api', owner: 'o', index: 0, image: 'ubuntu-22.04', size }),
      () => new Fleet('cred-fleet', { stack: withCredentials(url), spec: { owner: 'o', count: 1, image: 'ubuntu-22.04', size } }),
      () =>
        toFleetStack(
          { name: 'prod', site: stack.site, dataCenters: [{ name: 'miami', address: url, location: stack.dataCenters[0].location, hardware: [], capacity: {} }] } as unknown as LoadedStack,
          { lifecycle: { states: [], initial: 'Requested', terminal: [], requestable: [], failure: [], edges: [] }, images: {}, rules: new Map() } as unknown as LoadedPack,
        ),
    ];
    for (const f of declare) {
      let thrown: unknown;
      try {
        f();
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(Error);
      const message = (thrown as Error).message;
      expect(message).toMatch(/DMZ client URL of data center miami holds credentials \(https:\/\/\*\*\*@dmz\.miami\.example:8443\/?\).*Pulumi state in clear text/);
      expect(message).not.toContain('pw-s3cret-9d1');
    }
    expect(mocks.resources.filter((r) => r.name.startsWith('cred-'))).toEqual([]);
  });
});
