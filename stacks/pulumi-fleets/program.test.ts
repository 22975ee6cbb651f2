// The pulumi-fleets program under Pulumi's mocks, against a copy of the
// example stack (test/fixtures/example-stack, so editing the examples never
// breaks this test): each
// Fleet is declared with the fleet spec, the spec loader's hash and the tokens
// as secrets, and the provider Pulumi would store carries no token.
import { describe, expect, it } from 'vitest';
import * as pulumi from '@pulumi/pulumi';
import { specHash } from '../../engine/spec/index.ts';
import { mockPulumi, valueOf } from '../../packages/dmz-infra/testing.ts';
import { declareFleets, readConfig } from './program.ts';

/** Pulumi's marker of a secret value on the wire (sdk/nodejs/runtime/rpc.ts specialSigKey, specialSecretSig). */
const SECRET_SIG = '4dabf18193072939515e22adb298388d';
const SECRET_VALUE = '1b47061264138c4ac30d75fd1eb44270';
const TOKENS = { miami: 'miami-token-value', richmond: 'richmond-token-value' };
const mocks = mockPulumi({
  'pulumi-fleets:stackDir': '../../test/fixtures/example-stack',
  'pulumi-fleets:urls': JSON.stringify({ miami: 'https://dmz.miami.example:8443', richmond: 'https://dmz.richmond.example:8443' }),
  'pulumi-fleets:tokens': JSON.stringify(TOKENS),
});

describe('stacks/pulumi-fleets', () => {
  it('declares each fleet of the example stack with its spec, hash and secret tokens, and no token in the provider', async () => {
    const { stack, web, batch } = await declareFleets(readConfig());
    expect(stack.name).toBe('local');
    expect(stack.dataCenters.map((d) => [d.name, d.url])).toEqual([
      ['miami', 'https://dmz.miami.example:8443'],
      ['richmond', 'https://dmz.richmond.example:8443'],
    ]);
    await valueOf(pulumi.all([web.urn, batch.urn]));
    const fleets = mocks.resources.filter((r) => r.type === 'pulumi-nodejs:dynamic/dmzfleet:Fleet');
    expect(fleets.map((f) => f.name)).toEqual(['web', 'batch']);
    const webInputs = fleets[0].inputs;
    expect(webInputs.spec).toMatchObject({ name: 'web', owner: 'team-payments', count: 3, placement: { strategy: 'spread' } });
    expect(webInputs.specHash).toBe(specHash({ image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 40 }, hardware: ['general'], encryptedDisk: true }));
    // The engine receives the tokens as a secret (Pulumi's wire form of one: the secret signature and the value).
    expect(webInputs.tokens).toEqual({ [SECRET_SIG]: SECRET_VALUE, value: TOKENS });
    expect(typeof webInputs.__provider).toBe('string');
    for (const t of Object.values(TOKENS)) expect(webInputs.__provider).not.toContain(t);
    expect(webInputs.__provider).toContain('https://dmz.miami.example:8443');
  });
});
