import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../engine/diags/index.ts';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { loadStack } from '../engine/spec/index.ts';
import type { LoadedStack } from '../engine/spec/types.ts';
import type { LoadedPack } from '../engine/policy/types.ts';
import { DmzHttpClient } from './client.ts';
import { startEmbedded } from './embedded.ts';
import { TO_RUNNING, createRequest, newVm, walk } from './testing.ts';

const FLEET = `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-payments }
spec:
  count: 1
  image: ubuntu-22.04
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }
`;

function stackYaml(packDir: string): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: emb }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ${JSON.stringify(packDir)} }
  site: { name: charlotte, location: { lat: 35.2, lon: -80.8 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7, lon: -80.1 }
      capacity: { vms: 10, cpu: 100, memoryGiB: 400 }
      sim: { latencyMs: 2 }
    - name: remote
      address: https://dmz.remote.example:8443/
      location: { lat: 37.5, lon: -77.4 }
      capacity: { vms: 10 }
      auth: { tokenEnv: REMOTE_DMZ_TOKEN }
`;
}

describe('startEmbedded', () => {
  let dir: string;
  let stack: LoadedStack;
  let pack: LoadedPack;
  let record: FleetRecord;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmzfleet-embedded-'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml(resolve('policies/default')));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'specs', 'web.yaml'), FLEET);
    const loaded = await loadStack(dir, { env: {} });
    if (!loaded.stack || !loaded.pack) throw new Error(`stack does not load: ${JSON.stringify(loaded.diagnostics)}`);
    stack = loaded.stack;
    pack = loaded.pack;
    record = await openRecord('memory://');
  });
  afterAll(async () => {
    await record.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('needs the token of a remote data center when asked to', async () => {
    const err = (await startEmbedded({ stack, pack, record, env: {}, requireRemoteTokens: true }).catch((e: unknown) => e)) as FleetError;
    expect(err).toBeInstanceOf(FleetError);
    expect(err.diagnostics[0]).toMatchObject({ code: 'apply.token-missing', file: expect.stringContaining('stack.yaml') });
    expect(err.diagnostics[0].detail).toContain('REMOTE_DMZ_TOKEN');
    const lenient = await startEmbedded({ stack, pack, record, env: {} });
    expect([...lenient.clients.keys()]).toEqual(['miami']);
    await lenient.close();
  });

  it('runs the authority and a sim DMZ client over loopback; VMs and disk keys outlive the run', async () => {
    const first = await startEmbedded({ stack, pack, record, env: { REMOTE_DMZ_TOKEN: 'r-token' } });
    expect(first.clients.get('remote')).toEqual({ url: 'https://dmz.remote.example:8443', token: 'r-token' });
    const miami = first.clients.get('miami');
    expect(miami?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(first.authorityUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const c1 = new DmzHttpClient({ dataCenter: 'miami', baseUrl: miami!.url, token: () => miami!.token });
    const vm = newVm('emb');
    await c1.createVm(createRequest(vm));
    expect((await walk(c1, vm.id, TO_RUNNING)).at(-1)?.vm?.state).toBe('Running');
    expect((await walk(c1, vm.id, ['Running', 'ShuttingDown', 'PoweredOff'])).at(-1)?.vm?.state).toBe('PoweredOff');
    await first.close();

    // A new run: new ports and tokens, same sim state and authority secret.
    const second = await startEmbedded({ stack, pack, record, dataCenters: ['miami'] });
    expect(second.clients.has('remote')).toBe(false);
    const m2 = second.clients.get('miami')!;
    expect(m2.token).not.toBe(miami!.token);
    const c2 = new DmzHttpClient({ dataCenter: 'miami', baseUrl: m2.url, token: () => m2.token });
    expect((await c2.getVm(vm.id))?.observedState).toBe('PoweredOff');
    // The encrypted disk still unlocks: the key derives from the persisted secret.
    const again = await walk(c2, vm.id, ['PoweredOff', 'PoweredOn', 'Starting', 'Running']);
    expect(again.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    const old = new DmzHttpClient({ dataCenter: 'miami', baseUrl: m2.url, token: () => miami!.token, retries: 0 });
    await expect(old.listVms()).rejects.toThrow(/401/);
    await second.close();
  });
});
