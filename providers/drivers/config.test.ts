// The DMZ client config (specs/schema/dmz-client.schema.json): the examples
// load; every mistake is a diagnostic at its file:line:col.
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDmzClientConfig, loadDmzClientConfig } from './config.ts';

const HYBRID = resolve(import.meta.dirname, '..', '..', 'stacks', 'hybrid');

const AWS = `apiVersion: fleet/v1
kind: DmzClient
metadata: { dataCenter: virginia }
spec:
  aws:
    region: us-east-1
    subnetId: subnet-0abc
    securityGroupIds: [sg-0abc]
`;

describe('DMZ client config', () => {
  it.each([
    { file: 'dmz-virginia.yaml', driver: 'aws', dc: 'virginia' },
    { file: 'dmz-eastus.yaml', driver: 'azure', dc: 'eastus' },
  ] as const)('the example $file loads', async ({ file, driver, dc }) => {
    const r = await loadDmzClientConfig(join(HYBRID, file), driver, dc);
    expect(r.diagnostics).toEqual([]);
    expect(r.config?.spec[driver]).toBeDefined();
  });

  it.each([
    { name: 'unknown key', text: AWS.replace('    region: us-east-1', '    regoin: us-east-1'), code: 'spec.unknown-key', line: 6, col: 5 },
    { name: 'bad region', text: AWS.replace('us-east-1', 'Virginia'), code: 'spec.invalid-value', line: 6, col: 13 },
    { name: 'bad security group id', text: AWS.replace('[sg-0abc]', '[default]'), code: 'spec.invalid-value', line: 8, col: 24 },
    { name: 'endpoint not a URL', text: AWS + '    endpoint: localhost:4566\n', code: 'spec.invalid-value', line: 9, col: 15 },
    { name: 'no aws block for the aws driver', text: AWS.replace(/ {2}aws:[\s\S]*/, '  requestTimeoutMs: 5000\n'), code: 'apply.serve-config', line: 4, col: 1 },
    { name: 'another data center', text: AWS.replace('{ dataCenter: virginia }', '{ dataCenter: ohio }'), code: 'apply.serve-config', line: 3, col: 25 },
    { name: 'wrong kind', text: AWS.replace('kind: DmzClient', 'kind: Stack'), code: 'spec.kind', line: 2, col: 7 },
    { name: 'YAML syntax', text: AWS.replace('[sg-0abc]', '[sg-0abc'), code: 'spec.yaml-syntax', line: 9, col: 1 },
    // Past setTimeout's 32-bit limit a poll interval became 1 ms: the driver polled EC2 in a tight loop.
    { name: 'poll interval past 10 minutes', text: AWS + '    pollMs: 3000000000\n', code: 'spec.out-of-range', line: 9, col: 13 },
    // It was unbounded: a 200,000-character name validated (and was quoted whole as "another data center").
    { name: 'a 200,000-character data center', text: AWS.replace('{ dataCenter: virginia }', `{ dataCenter: ${'v'.repeat(200_000)} }`), code: 'spec.out-of-range', line: 3, col: 25 },
    { name: 'a 41-character data center', text: AWS.replace('{ dataCenter: virginia }', `{ dataCenter: ${'v'.repeat(41)} }`), code: 'spec.out-of-range', line: 3, col: 25 },
  ])('$name: $code at $line:$col', ({ text, code, line, col }) => {
    const r = checkDmzClientConfig(text, 'dmz.yaml', 'aws', 'virginia');
    expect(r.config).toBeUndefined();
    expect(r.diagnostics.map((d) => ({ code: d.code, file: d.file, line: d.line, col: d.col }))).toContainEqual({ code, file: 'dmz.yaml', line, col });
  });

  it("bounds metadata.dataCenter as a data center's name in the stack file (40 characters), saying why", () => {
    const named = (dc: string) => AWS.replace('{ dataCenter: virginia }', `{ dataCenter: ${dc} }`);
    const [d] = checkDmzClientConfig(named('v'.repeat(41)), 'dmz.yaml', 'aws', 'v'.repeat(41)).diagnostics;
    expect(d.detail).toBe("metadata.dataCenter must be at most 40 characters (it is 41): it names a data center of the stack, and a data center's name is at most 40 characters.");
    expect(checkDmzClientConfig(named('v'.repeat(40)), 'dmz.yaml', 'aws', 'v'.repeat(40)).diagnostics).toEqual([]);
  });

  const AZURE = `apiVersion: fleet/v1
kind: DmzClient
metadata: { dataCenter: eastus }
spec:
  azure:
    subscriptionId: 00000000-0000-0000-0000-000000000003
    resourceGroup: dmzfleet-eastus
    location: eastus
    vnet: vnet
    subnet: vms
    sshPublicKey: ssh-ed25519 AAAAC3Nza operators@example
`;
  it.each([
    { name: 'azure: no operator key', text: AZURE.replace(/ {4}sshPublicKey:.*\n/, ''), code: 'spec.missing-field', line: 5, col: 3 },
    { name: 'azure: a private key where the public one goes', text: AZURE.replace('ssh-ed25519 AAAAC3Nza operators@example', '-----BEGIN OPENSSH PRIVATE KEY-----'), code: 'spec.invalid-value', line: 11, col: 19 },
    { name: 'azure: a plain-HTTP resource manager', text: AZURE + '    endpoint: http://127.0.0.1:8443\n', code: 'spec.invalid-value', line: 12, col: 15 },
    { name: 'azure: no azure block for the azure driver', text: AZURE.replace(/ {2}azure:[\s\S]*/, '  requestTimeoutMs: 5000\n'), code: 'apply.serve-config', line: 4, col: 1 },
  ])('$name: $code at $line:$col', ({ text, code, line, col }) => {
    const r = checkDmzClientConfig(text, 'dmz.yaml', 'azure', 'eastus');
    expect(r.config).toBeUndefined();
    expect(r.diagnostics.map((d) => ({ code: d.code, file: d.file, line: d.line, col: d.col }))).toContainEqual({ code, file: 'dmz.yaml', line, col });
  });

  // It said only Node's code ("Cannot read the DMZ client config …: ENOENT."), as the stack loader no longer does.
  it.each([
    { name: 'a missing file', file: '/no/such/dmz.yaml', says: 'no such file (ENOENT)' },
    { name: 'a folder', file: '/', says: 'it is a folder, not a file (EISDIR)' },
  ])('$name is spec.read-error naming it, in words', async ({ file, says }) => {
    const r = await loadDmzClientConfig(file, 'aws', 'virginia');
    expect(r.diagnostics).toMatchObject([{ code: 'spec.read-error', file, detail: `Cannot read the DMZ client config ${file}: ${says}; --config takes a DmzClient file (docs/formats.md).` }]);
  });
});
