// Test support shared by the cloud worlds (aws/world.ts, azure/world.ts): a
// real authority and a real DMZ client running one cloud driver over
// loopback HTTP, with the CLI's client to that DMZ client.
import { randomUUID } from 'node:crypto';
import type { RunningService } from '../../engine/authority/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import { DmzHttpClient } from '../client.ts';
import { startDmzClient, type RunningDmzClient } from '../dmz-client/index.ts';
import type { Driver } from './types.ts';

/** What every cloud world holds: one data center, its authority, its DMZ client and the client the CLI uses. */
export interface CloudWorld<D extends Driver> {
  stack: string;
  dataCenter: string;
  record: FleetRecord;
  authority: RunningService;
  driver: D;
  dmz: RunningDmzClient;
  client: DmzHttpClient;
  dir: string;
  close(): Promise<void>;
}

/** The world's DMZ client (its state under `dir`) running `driver`, and the CLI's client to it. */
export async function startWorldDmz(o: {
  dataCenter: string;
  driver: Driver;
  authority: RunningService;
  authorityToken: string;
  dir: string;
  pack: LoadedPack;
}): Promise<{ dmz: RunningDmzClient; client: DmzHttpClient }> {
  const clientToken = `client-${randomUUID()}`;
  const { dataCenter, driver, authorityToken, dir, pack } = o;
  const dmz = await startDmzClient({ dataCenter, driver, authorityUrl: o.authority.url, authorityToken, clientToken, stateDir: dir, pack, readyTimeoutMs: 10_000 });
  const client = new DmzHttpClient({ dataCenter, baseUrl: dmz.url, token: () => clientToken, retries: 3, baseDelayMs: 5 });
  return { dmz, client };
}
