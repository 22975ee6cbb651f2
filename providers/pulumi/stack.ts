// What a Pulumi program needs to know of an existing dmzfleet stack, as plain
// data: the providers built from it are serialized into Pulumi's state with
// this inside them, so it holds no secret (tokens travel as Pulumi secrets in
// the resources' inputs, or are read from the named environment variables at
// call time) and no object with methods (the pack's lifecycle is rebuilt from
// its definition at call time).
import * as pulumi from '@pulumi/pulumi';
import { FleetError, clip, diag, type Diagnostic } from '../../engine/diags/index.ts';
import type { Enforcement } from '../../engine/model/index.ts';
import type { LifecycleDef } from '../../engine/policy/lifecycle.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import { loadStack, type LoadedStack, type Location } from '../../engine/spec/index.ts';
import type { DataCenterProviderOptions } from '../provider.ts';
import { tokenEnvOf } from '../embedded.ts';

/** One data center of the stack, reached at its DMZ client's URL. */
export interface FleetStackDataCenter {
  name: string;
  /** Base URL of the DMZ client. */
  url: string;
  /** Name of the environment variable read for the token when the resource is given none. */
  tokenEnv: string;
  location: Location;
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
}

/** A stack as the Vm and Fleet providers carry it (plain data, no secrets). */
export interface FleetStack {
  name: string;
  site: { name: string; location: Location };
  dataCenters: FleetStackDataCenter[];
  /** The pack's lifecycle diagram as written in policy.yaml. */
  lifecycle: LifecycleDef & { transitions: { from: string; to: string; operation: string }[]; failure: string[] };
  /** logical image -> data center -> real image (the pack's catalog). */
  images: Record<string, Record<string, string>>;
  /** The pack's datacenter-capacity enforcement: whether placement counts capacity. */
  capacityEnforcement: Enforcement;
  /** The pack's protect enforcement: whether a fleet's `protect: true` holds its members (default mandatory). */
  protectEnforcement?: Enforcement;
  /** Per DMZ client request attempt; default 120 000. */
  timeoutMs?: number;
  /** Retries per request; default 5. */
  retries?: number;
}

export interface LoadFleetStackOptions {
  /** The DMZ client URL of data centers whose address in stack.yaml is `embedded` (or to override a URL). */
  urls?: Record<string, string>;
  timeoutMs?: number;
  retries?: number;
  cwd?: string;
}

/** The plain-data form of a loaded stack and pack; a data center without a URL is an error naming it. */
export function toFleetStack(stack: LoadedStack, pack: LoadedPack, opts: Omit<LoadFleetStackOptions, 'cwd'> = {}): FleetStack {
  const problems: Diagnostic[] = [];
  const dataCenters: FleetStackDataCenter[] = [];
  for (const d of stack.dataCenters) {
    const url = opts.urls?.[d.name] ?? (d.address === 'embedded' ? undefined : d.address);
    if (!url) {
      problems.push(diag('apply.serve-config', `Data center ${clip(d.name)} is embedded: a Pulumi program reaches DMZ clients over the network, so pass its URL (urls.${clip(d.name)}).`, d.where));
      continue;
    }
    const credentials = urlCredentials(d.name, url, tokenEnvOf(d));
    if (credentials) {
      problems.push(credentials);
      continue;
    }
    dataCenters.push({
      name: d.name,
      url: url.replace(/\/+$/, ''),
      tokenEnv: tokenEnvOf(d),
      location: { lat: d.location.lat, lon: d.location.lon },
      hardware: [...d.hardware],
      capacity: { ...d.capacity },
    });
  }
  if (problems.length > 0) throw new FleetError(problems);
  const lc = pack.lifecycle;
  const images: Record<string, Record<string, string>> = {};
  for (const [logical, per] of Object.entries(pack.images)) images[logical] = { ...per };
  return {
    name: stack.name,
    site: { name: stack.site.name, location: { lat: stack.site.location.lat, lon: stack.site.location.lon } },
    dataCenters,
    lifecycle: {
      states: [...lc.states],
      initial: lc.initial,
      terminal: [...lc.terminal],
      requestable: [...lc.requestable],
      failure: [...lc.failure],
      transitions: lc.edges.map((e) => ({ from: e.from, to: e.to, operation: e.operation })),
    },
    images,
    capacityEnforcement: pack.rules.get('datacenter-capacity')?.enforcement ?? 'mandatory',
    protectEnforcement: pack.rules.get('protect')?.enforcement ?? 'mandatory',
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
  };
}

/** Loads `stacks/<name>` (stack.yaml, its pack) the way `fleet validate` does; every error is thrown as one FleetError. */
export async function loadFleetStack(stackDir: string, opts: LoadFleetStackOptions = {}): Promise<FleetStack> {
  const r = await loadStack(stackDir, opts.cwd ? { cwd: opts.cwd } : {});
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0 || !r.stack || !r.pack) throw new FleetError(errors.length > 0 ? errors : [diag('spec.stack-not-found', `${stackDir} did not load.`)]);
  return toFleetStack(r.stack, r.pack, opts);
}

/**
 * Why a DMZ client URL cannot go into a Pulumi program's provider: it holds
 * credentials (`user:password@`, which the DMZ client's transport would send
 * as basic auth). The Vm and Fleet providers are serialized into the Pulumi
 * state in clear text, URL and all (the `__provider` input), where no secret
 * may go. Undefined when it holds none.
 */
export function urlCredentials(dataCenter: string, url: string, tokenEnv: string): Diagnostic | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined; // Not a URL: the DMZ client's own check names it at the first call.
  }
  if (u.username === '' && u.password === '') return undefined;
  u.username = '***';
  u.password = '';
  return diag(
    'apply.serve-config',
    `The DMZ client URL of data center ${clip(dataCenter)} holds credentials (${clip(u.toString())}): a Pulumi program's Vm and Fleet providers are written into the Pulumi state in clear text, URL and all. Give the URL without user:password@; the DMZ client's token goes in the resource's token (a Pulumi secret) or in ${tokenEnv}.`,
  );
}

/** Refuses a stack whose DMZ client URLs (of `only`, else all) hold credentials (urlCredentials): the providers built from it are written into the Pulumi state. */
export function refuseUrlCredentials(stack: FleetStack, only?: string): void {
  const problems = stack.dataCenters.filter((d) => only === undefined || d.name === only).flatMap((d) => urlCredentials(d.name, d.url, d.tokenEnv) ?? []);
  if (problems.length > 0) throw new FleetError(problems);
}

/** The options of the provider of one data center of the stack. */
export function providerOptions(stack: FleetStack, dataCenter: string): DataCenterProviderOptions {
  const d = stack.dataCenters.find((x) => x.name === dataCenter);
  if (!d) throw new FleetError(diag('spec.unknown-data-center', `Data center ${dataCenter} is not one of stack ${stack.name}'s (${stack.dataCenters.map((x) => x.name).join(', ')}).`));
  return {
    dataCenter: d.name,
    url: d.url,
    tokenEnv: d.tokenEnv,
    lifecycle: stack.lifecycle,
    ...(stack.timeoutMs !== undefined ? { timeoutMs: stack.timeoutMs } : {}),
    ...(stack.retries !== undefined ? { retries: stack.retries } : {}),
  };
}

/**
 * What a program's creates name as their fleet's manager (the record's
 * fleets.managed_by): `pulumi:<project>/<stack>`, or `pulumi` where the
 * program's project and stack are not known. Computed in the program (the
 * Fleet and Vm constructors), never by a serialized provider. `fleet plan`
 * leaves a fleet so managed alone when no fleet file declares it.
 */
export function programManager(): string {
  try {
    return `pulumi:${pulumi.getProject()}/${pulumi.getStack()}`;
  } catch {
    return 'pulumi';
  }
}
