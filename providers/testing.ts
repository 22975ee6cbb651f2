// Test fixture: a real authority, one sim data center + DMZ client per name,
// a real record (in-memory PGlite) and the real default pack, all over
// loopback HTTP. Used by the tests of providers/ and engine/authority/.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAuthority, type RunningService } from '../engine/authority/index.ts';
import { loadPack } from '../engine/policy/index.ts';
import type { LoadedPack } from '../engine/policy/types.ts';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { DmzHttpClient, type DmzHttpClientOptions } from './client.ts';
import { startDmzClient, type RunningDmzClient, type StartDmzClientOptions } from './dmz-client/index.ts';
import { createSimDriver, type SimDriver, type SimOptions } from './drivers/sim/index.ts';
import { credentialKey, type BatchStep, type CreateVmRequest, type NewVmRequest, type StepResult } from '../protocol/index.ts';

export interface TestDc {
  name: string;
  driver: SimDriver;
  dmz: RunningDmzClient;
  client: DmzHttpClient;
  clientToken: string;
  authorityToken: string;
  stateDir: string;
  /** Restarts the DMZ client and its sim driver (state reloaded from disk). */
  restart(): Promise<void>;
}

export interface TestWorld {
  /** A fresh stack name per world, so worlds can share one record. */
  stack: string;
  record: FleetRecord;
  pack: LoadedPack;
  authority: RunningService;
  dir: string;
  dcs: Map<string, TestDc>;
  dc(name: string): TestDc;
  close(): Promise<void>;
}

let packCache: LoadedPack | undefined;
export async function defaultPack(): Promise<LoadedPack> {
  if (packCache) return packCache;
  const { pack, diagnostics } = await loadPack(join(import.meta.dirname, '..', 'policies', 'default'));
  if (!pack) throw new Error(`bug: default pack does not load: ${JSON.stringify(diagnostics)}`);
  packCache = pack;
  return pack;
}

export async function startTestWorld(opts: {
  dataCenters?: string[];
  sim?: Partial<Omit<SimOptions, 'dataCenter' | 'stateDir'>> | ((dc: string) => Partial<Omit<SimOptions, 'dataCenter' | 'stateDir'>>);
  client?: Partial<DmzHttpClientOptions>;
  dmz?: Partial<Pick<StartDmzClientOptions, 'driverAttempts' | 'driverTimeoutMs' | 'readyTimeoutMs' | 'logger' | 'bootLimit' | 'bootLimitClock'>>;
  /** Lifetime of the authority's scoped credentials (default 10 minutes). */
  credentialTtlMs?: number;
  /** Share one record between worlds (PGlite start-up is the slow part); each world gets its own stack name. */
  record?: FleetRecord;
  /** Puts something (a proxy) between the DMZ clients and the authority: given the authority's URL, the URL they call. */
  via?: (authorityUrl: string) => Promise<string>;
  /** The authority's admin tokens (its FLEET_ADMIN_TOKEN); default none. */
  adminTokens?: string[];
  /** The authority's JSON-line logs; default none. */
  authorityLogger?: StartDmzClientOptions['logger'];
  /** The clock of the authority's limit of refused admin checks per data center (AUTHORITY_ADMIN_CHECK_LIMIT); default Date.now. */
  authorityAdminCheckClock?: () => number;
} = {}): Promise<TestWorld> {
  const stack = `test-${randomUUID().slice(0, 8)}`;
  const names = opts.dataCenters ?? ['miami', 'richmond'];
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-providers-'));
  const record = opts.record ?? (await openRecord('memory://'));
  const pack = await defaultPack();
  const tokens = names.map((name) => ({ name, token: `authority-${name}-${randomUUID()}` }));
  const authority = await startAuthority({ record, pack, stackName: stack, dataCenters: tokens, secret: 'test-secret',
    ...(opts.credentialTtlMs ? { credentialTtlMs: opts.credentialTtlMs } : {}),
    ...(opts.adminTokens ? { adminTokens: opts.adminTokens } : {}),
    ...(opts.authorityLogger ? { logger: opts.authorityLogger } : {}),
    ...(opts.authorityAdminCheckClock ? { adminCheckLimitClock: opts.authorityAdminCheckClock } : {}),
  });
  const authorityUrl = opts.via ? await opts.via(authority.url) : authority.url;
  const dcs = new Map<string, TestDc>();
  for (const { name, token } of tokens) {
    const stateDir = join(dir, name);
    const clientToken = `client-${name}-${randomUUID()}`;
    const make = async () => {
      // Asked at every start: a restart may start the sim with other settings.
      const simOpts = typeof opts.sim === 'function' ? opts.sim(name) : (opts.sim ?? {});
      const driver = await createSimDriver({ dataCenter: name, stateDir, latencyMs: 2, capacity: { vms: 50, cpu: 200, memoryGiB: 800 }, credentialKey: credentialKey(token, name), ...simOpts });
      const dmz = await startDmzClient({
        dataCenter: name,
        driver,
        authorityUrl,
        authorityToken: token,
        clientToken,
        stateDir,
        pack,
        readyTimeoutMs: 10_000,
        ...opts.dmz,
      });
      return { driver, dmz };
    };
    const first = await make();
    const entry: TestDc = {
      name,
      ...first,
      client: new DmzHttpClient({ dataCenter: name, baseUrl: first.dmz.url, token: () => clientToken, retries: 3, baseDelayMs: 5, ...opts.client }),
      clientToken,
      authorityToken: token,
      stateDir,
      restart: async () => {
        await entry.dmz.close();
        await entry.driver.close();
        const next = await make();
        entry.driver = next.driver;
        entry.dmz = next.dmz;
        entry.client = new DmzHttpClient({ dataCenter: name, baseUrl: next.dmz.url, token: () => clientToken, retries: 3, baseDelayMs: 5, ...opts.client });
      },
    };
    dcs.set(name, entry);
  }
  return {
    stack,
    record,
    pack,
    authority,
    dir,
    dcs,
    dc(name) {
      const d = dcs.get(name);
      if (!d) throw new Error(`bug: no test data center ${name}`);
      return d;
    },
    async close() {
      for (const d of dcs.values()) {
        await d.dmz.close();
        await d.driver.close();
      }
      await authority.close();
      if (!opts.record) await record.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function newVm(stack: string, over: Partial<NewVmRequest> = {}): NewVmRequest {
  const index = over.index ?? 0;
  const fleet = over.fleet ?? 'web';
  return {
    id: randomUUID(),
    stack,
    fleet,
    owner: 'team-payments',
    index,
    name: `${stack}-${fleet}-${index}`,
    image: 'ubuntu-22.04',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    encryptedDisk: true,
    desiredState: 'Running',
    specHash: 'h1',
    ...over,
  };
}

export function createRequest(vm: NewVmRequest, key: string = randomUUID()): CreateVmRequest {
  return { idempotencyKey: key, planId: 'plan-1', vm };
}

/** Walks a VM along `path` (states, the first being its current one), one transition per edge; stops at the first result that is not ok. */
export async function walk(client: DmzHttpClient, vmId: string, path: readonly string[], terminal = 'Deleted'): Promise<StepResult[]> {
  const out: StepResult[] = [];
  for (let i = 1; i < path.length; i++) {
    const req = { idempotencyKey: randomUUID(), planId: 'plan-1', from: path[i - 1], to: path[i] };
    const r = path[i] === terminal ? await client.deleteVm(vmId, req) : await client.transition(vmId, req);
    out.push(r);
    if (r.outcome !== 'ok') break;
  }
  return out;
}

export const TO_RUNNING = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] as const;

/** A run's steps walking `vmId` along `path` (states, the first its current one), one transition per edge, keyed by plan, VM and state. */
export function transitionSteps(vmId: string, path: readonly string[], planId: string): BatchStep[] {
  return path.slice(1).map((to, i) => ({ op: 'transition', vmId, body: { idempotencyKey: `${planId}/${vmId}/${path[i]}`, planId, from: path[i], to } }));
}

/** Sends `list` as one run to `client` and collects each step's result as it is answered. */
export async function runCollect(client: DmzHttpClient, list: BatchStep[]): Promise<StepResult[]> {
  const out: StepResult[] = [];
  await client.run(list, (_k, r) => out.push(r));
  return out;
}
