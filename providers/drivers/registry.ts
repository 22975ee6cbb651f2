// The drivers this build has, by kind, and how a DMZ client makes one.
// Each driver module is imported only when a client runs it, so the CLI
// never loads a cloud SDK it does not use.
//
// To add a driver: write providers/drivers/<kind>/ exporting a DriverFactory,
// add one line to FACTORIES, and make it pass the contract suite
// (providers/drivers/contract.ts, README.md beside this file).
import type { KeyObject } from 'node:crypto';
import type { LoadedPack } from '../../engine/policy/types.ts';
import type { LoadedDataCenter } from '../../engine/spec/types.ts';
import type { DmzClientSpec } from '../../specs/types/dmz-client.ts';
import type { Driver } from './types.ts';

/** Every driver kind a stack's data center may name (specs/schema/stack.schema.json `driver`). */
export const DRIVER_KINDS = ['sim', 'aws', 'azure'] as const;
export type DriverKind = (typeof DRIVER_KINDS)[number];

export function isDriverKind(s: string): s is DriverKind {
  return (DRIVER_KINDS as readonly string[]).includes(s);
}

/** What a DMZ client hands a driver factory. */
export interface DriverContext {
  /** The stack's entry for the data center (name, capacity, sim settings). */
  dataCenter: LoadedDataCenter;
  /** Stack name: cloud drivers tag their VMs with it (the broker's session policy allows only those). */
  stack: string;
  /** The pack: instance-type catalog, lifecycle. */
  pack: LoadedPack;
  /** The DMZ client config's spec (`--config`); empty without one. */
  config: DmzClientSpec;
  /** Folder for the driver's local state. */
  stateDir: string;
  env: Readonly<Record<string, string | undefined>>;
  /**
   * The key that verifies the authority's scoped tokens for this data center
   * (protocol/scoped-token.ts: derived from the DMZ client's token at the
   * authority, never the token itself). The sim verifies every mutating
   * call's credentials with it; cloud drivers leave that to the cloud, which
   * checks the credentials the authority brokered.
   */
  credentialKey: KeyObject;
}

export type DriverFactory = (ctx: DriverContext) => Promise<Driver>;

const FACTORIES: Record<DriverKind, (() => Promise<DriverFactory>) | undefined> = {
  sim: async () => (await import('./sim/index.ts')).simDriverFactory,
  aws: async () => (await import('./aws/index.ts')).awsDriverFactory,
  azure: async () => (await import('./azure/index.ts')).azureDriverFactory,
};

/** The kinds this build can run. */
export function availableDrivers(): DriverKind[] {
  return DRIVER_KINDS.filter((k) => FACTORIES[k] !== undefined);
}

/** The factory of a kind, or undefined when this build lacks it. */
export async function driverFactory(kind: DriverKind): Promise<DriverFactory | undefined> {
  const load = FACTORIES[kind];
  return load ? load() : undefined;
}
