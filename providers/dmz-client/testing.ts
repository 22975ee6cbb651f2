// Test fixture of the DMZ client's parts without HTTP: a step runner of data
// center miami over the real authority in-process (its calls made directly,
// as the authority client would send them over HTTP, and logged), a real
// record, a real sim data center and a real idempotency store, both in a
// temp folder.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authority, type AuthorityCoreOptions } from '../../engine/authority/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { createSimDriver, type SimDriver, type SimOptions } from '../drivers/sim/index.ts';
import { testCredentialKey, testDmzToken } from '../drivers/sim/testing.ts';
import { ScopedTokenIssuer } from '../../engine/authority/credentials/scoped.ts';
import type { StepResult } from '../../protocol/index.ts';
import { defaultPack } from '../testing.ts';
import { IdempotencyStore } from './idempotency.ts';
import { StepRunner, type AuthorityCalls } from './step.ts';
import type { RequestDefaults } from './requests.ts';

export const DC = 'miami';

/** One edge's request body, as the CLI sends it. */
export const edge = (from: string, to: string, key: string = randomUUID()) => ({ idempotencyKey: key, planId: 'plan-1', from, to });

export interface StepWorld {
  stack: string;
  /** The step runner's data center and the default pack's ends. */
  defaults: RequestDefaults;
  steps: StepRunner;
  driver: SimDriver;
  store: IdempotencyStore<StepResult>;
  /** The DMZ client's calls to the authority, in order, as `call what`. */
  calls: string[];
  /** Holds the next report until the returned function is called (see reportOnItsWay). */
  holdReports(): () => void;
  /** The next report of `from>to` is answered `err` without reaching the authority (an authority restarting: 503). */
  failReport(edge: string, err: Error): void;
  /** The authority restarted: a new one over the same record and secret, which remembers nothing of the old one. */
  restartAuthority(): void;
  close(): Promise<void>;
}

/** A step runner of data center miami over the real authority, a real sim and a real store; a fresh stack on `record`. */
export async function startStepWorld(record: FleetRecord, sim: Partial<SimOptions> = {}, authorityOptions: Pick<AuthorityCoreOptions, 'credentialTtlMs'> = {}): Promise<StepWorld> {
  const stack = `step-${randomUUID().slice(0, 8)}`;
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-step-'));
  const pack = await defaultPack();
  const start = () => new Authority({ record, pack, stackName: stack, secret: 'test-secret', scopedTokens: new ScopedTokenIssuer([{ name: DC, token: testDmzToken(DC) }], 'test-secret'), ...authorityOptions });
  let core = start();
  const calls: string[] = [];
  let hold: Promise<void> | undefined;
  const failing = new Map<string, Error>();
  const authority: AuthorityCalls = {
    authorize: (b) => (calls.push(`authorize ${b.kind} ${b.from ?? ''}>${b.to}`), core.authorize(DC, b)),
    report: async (b, o) => {
      calls.push(`report ${b.from}>${b.to} ${b.outcome}${o?.lazy ? ' lazy' : ''}`);
      const err = failing.get(`${b.from}>${b.to}`);
      if (err) {
        failing.delete(`${b.from}>${b.to}`);
        throw err;
      }
      await hold;
      return core.report(DC, b);
    },
    advance: (b) => (calls.push(`advance ${b.create ? 'create' : `report ${b.report?.from}>${b.report?.to}`} +${b.next.length}`), core.advance(DC, b)),
  };
  const driver = await createSimDriver({ dataCenter: DC, stateDir: dir, latencyMs: 1, capacity: { vms: 10, cpu: 100, memoryGiB: 100 }, credentialKey: testCredentialKey(DC), ...sim });
  const store = new IdempotencyStore<StepResult>(dir);
  const defaults: RequestDefaults = { dataCenter: DC, initial: pack.lifecycle.initial, terminal: pack.lifecycle.terminal[0] };
  const steps = new StepRunner({ ...defaults, driver, authority, store, readyTimeoutMs: 2_000, driverBackoffMs: 0 });
  return {
    stack,
    defaults,
    steps,
    driver,
    store,
    calls,
    holdReports() {
      let release = () => {};
      hold = new Promise<void>((r) => (release = r));
      return () => {
        hold = undefined;
        release();
      };
    },
    failReport(edge, err) {
      failing.set(edge, err);
    },
    restartAuthority() {
      core = start();
    },
    async close() {
      await store.close();
      await driver.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

