// What the AWS and Azure DMZ components share: the data-center entry a
// deployment produces for stack.yaml, the tags every resource carries, the
// checks of the CIDRs the network admits, and the start-up script of the
// DMZ client host (cloud-init user data).
import { stringify } from 'yaml';

/** The stack.yaml entry of a deployed data center (specs/schema/stack.schema.json, DataCenter). */
export interface DataCenterEntry {
  name: string;
  /** The DMZ client's URL. */
  address: string;
  location: { lat: number; lon: number };
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
  auth: { tokenEnv: string };
}

/** What every DMZ client host is told about its data center (besides the cloud's own settings). */
export interface DataCenterFacts {
  /** The data center's name in stack.yaml. */
  name: string;
  location: { lat: number; lon: number };
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
}

/** Port of the DMZ client's API (the CLI's calls). */
export const DEFAULT_API_PORT = 8443;

/** Tag keys every resource of a DMZ carries; the AWS role's conditions and the checks rely on them. */
export const TAG_STACK = 'dmzfleet-stack';
export const TAG_DATA_CENTER = 'dmzfleet-data-center';

export function dmzTags(stack: string, dataCenter: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...extra, [TAG_STACK]: stack, [TAG_DATA_CENTER]: dataCenter, 'dmzfleet-managed-by': 'pulumi' };
}

/** The variable the CLI reads the DMZ client's token from (providers/embedded.ts defaultTokenEnv). */
export function cliTokenEnv(dataCenter: string): string {
  return `FLEET_CLI_TOKEN_${dataCenter.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** The variable the DMZ client reads its token at the authority from (engine/cli serve-run.ts). */
export function authorityTokenEnv(dataCenter: string): string {
  return `FLEET_DMZ_TOKEN_${dataCenter.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

const IPV4_CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/**
 * Throws when a CIDR the DMZ would admit is malformed or opens it to
 * everyone (a /0, or a prefix shorter than /8): the tenant's networks are
 * named, never "anywhere". Checked when the component is declared, so
 * `pulumi preview` fails before anything is created.
 */
export function checkAdmittedCidrs(what: string, cidrs: readonly string[]): void {
  if (cidrs.length === 0) throw new Error(`${what}: name at least one CIDR to admit; an empty list would leave the DMZ client unreachable.`);
  for (const c of cidrs) {
    const m = IPV4_CIDR.exec(c);
    if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) throw new Error(`${what}: ${c} is not an IPv4 CIDR such as 10.0.0.0/16.`);
    if (Number(m[5]) < 8) throw new Error(`${what}: ${c} admits a /${m[5]}, which is most of the internet; name the tenant's networks instead.`);
  }
}

export interface ServeOptions {
  dataCenter: string;
  driver: 'aws' | 'azure';
  authorityUrl: string;
  port: number;
  /** Folder of the stack on the host (stack.yaml and its pack). */
  stackDir: string;
}

/** The DMZ client's command line on the host. */
export function serveCommand(o: ServeOptions): string[] {
  return ['fleet', 'serve', 'dmz-client', '--data-center', o.dataCenter, '--driver', o.driver, '--authority', o.authorityUrl, '--host', '0.0.0.0', '--port', String(o.port), '--stack', o.stackDir];
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * cloud-init user data of the DMZ client host: fetches the host's secrets
 * (TLS certificate and key, the two tokens) with the host's own identity
 * (`fetchSecrets` prints a JSON object), writes them 0600 for the service
 * user only (the certificate's paths as FLEET_TLS_CERT and FLEET_TLS_KEY, the
 * variables engine/transport/tls.ts SERVER_TLS_ENV names), and runs
 * `fleet serve dmz-client` under systemd. The script
 * holds no secret itself: user data is readable by anyone who may describe
 * the VM.
 */
export function hostScript(o: ServeOptions & { fetchSecrets: string; install: readonly string[] }): string {
  const tokenEnv = cliTokenEnv(o.dataCenter);
  const authEnv = authorityTokenEnv(o.dataCenter);
  return [
    '#!/bin/bash',
    'set -euo pipefail',
    'umask 077',
    'id dmzfleet >/dev/null 2>&1 || useradd --system --home /var/lib/dmzfleet --create-home dmzfleet',
    ...o.install,
    'install -d -m 0700 -o dmzfleet -g dmzfleet /etc/dmzfleet /etc/dmzfleet/tls',
    `secrets=$(${o.fetchSecrets})`,
    `printf '%s' "$secrets" | jq -r .tlsCert > /etc/dmzfleet/tls/cert.pem`,
    `printf '%s' "$secrets" | jq -r .tlsKey > /etc/dmzfleet/tls/key.pem`,
    `printf '${tokenEnv}=%s\\n${authEnv}=%s\\nFLEET_TLS_CERT=/etc/dmzfleet/tls/cert.pem\\nFLEET_TLS_KEY=/etc/dmzfleet/tls/key.pem\\n' "$(printf '%s' "$secrets" | jq -r .clientToken)" "$(printf '%s' "$secrets" | jq -r .authorityToken)" > /etc/dmzfleet/env`,
    'unset secrets',
    'chown -R dmzfleet:dmzfleet /etc/dmzfleet && chmod 0600 /etc/dmzfleet/env /etc/dmzfleet/tls/*.pem',
    'cat > /etc/systemd/system/dmzfleet-dmz-client.service <<UNIT',
    '[Unit]',
    `Description=dmzfleet DMZ client of data center ${o.dataCenter}`,
    'After=network-online.target',
    '[Service]',
    'User=dmzfleet',
    'EnvironmentFile=/etc/dmzfleet/env',
    `ExecStart=/usr/bin/env ${serveCommand(o).map(shellQuote).join(' ')}`,
    'Restart=always',
    'NoNewPrivileges=true',
    'ProtectSystem=strict',
    'ReadWritePaths=/var/lib/dmzfleet',
    '[Install]',
    'WantedBy=multi-user.target',
    'UNIT',
    'systemctl daemon-reload',
    'systemctl enable --now dmzfleet-dmz-client.service',
    '',
  ].join('\n');
}

/** The data-center entry of a host reached at `address`. */
export function dataCenterEntry(facts: DataCenterFacts, address: string): DataCenterEntry {
  return {
    name: facts.name,
    address,
    location: { lat: facts.location.lat, lon: facts.location.lon },
    hardware: [...facts.hardware],
    capacity: { ...facts.capacity },
    auth: { tokenEnv: cliTokenEnv(facts.name) },
  };
}

/** The parts of a stack a DMZ deployment does not know (the tenant decides them). */
export interface StackBase {
  name: string;
  specs: string[];
  record: string;
  policyPack: string;
  site: { name: string; location: { lat: number; lon: number } };
}

/** A whole stack.yaml for deployed data centers: `pulumi stack output stackYaml > stacks/<name>/stack.yaml`. */
export function stackYaml(base: StackBase, entries: readonly DataCenterEntry[]): string {
  const doc = {
    apiVersion: 'fleet/v1',
    kind: 'Stack',
    metadata: { name: base.name },
    spec: {
      specs: base.specs,
      record: base.record,
      policyPack: { path: base.policyPack },
      site: base.site,
      dataCenters: entries.map((e) => ({ name: e.name, address: e.address, location: e.location, hardware: e.hardware, capacity: e.capacity, auth: e.auth })),
    },
  };
  return `# Written from a DMZ deployment (packages/dmz-infra); no entry holds a secret.\n${stringify(doc)}`;
}
