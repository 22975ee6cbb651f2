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
  /** The driver its DMZ client runs. */
  driver: 'aws' | 'azure';
  /** How the authority brokers the DMZ client's credentials for mutating calls (AWS: the broker role it assumes). */
  aws?: { region: string; roleArn: string; externalId?: string };
  /** The same for Azure: the broker principal (its secret stays in the authority's environment, named by clientSecretEnv). */
  azure?: { tenantId: string; clientId: string; subscriptionId: string; resourceGroup: string; clientSecretEnv?: string };
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

/** Tag keys every resource of a DMZ carries; the checks rely on them. */
export const TAG_STACK = 'dmzfleet-stack';
export const TAG_DATA_CENTER = 'dmzfleet-data-center';

/**
 * Tag keys the DMZ client's aws driver writes on every VM it creates and on
 * its volumes (providers/drivers/aws/instances.ts, TAGS; aws.test.ts checks
 * they agree): the broker role's conditions name them, so the role may
 * change only the VMs of this stack.
 */
export const VM_TAG_STACK = 'fleet:stack';
export const VM_TAG_DATA_CENTER = 'fleet:data-center';
/** The one tag the driver changes on an existing VM (its size, after a resize). */
export const VM_TAG_SIZE = 'fleet:size';

/**
 * The address `offset` hosts into an IPv4 CIDR (10.20.1.0/24, 10 ->
 * 10.20.1.10): the DMZ client host's fixed private address, known before the
 * host exists, so its boot URL goes into its own config and its TLS
 * certificate can be issued ahead. AWS keeps the first four addresses of a
 * subnet and Azure the first four too, so offsets start at 4.
 */
export function hostAddress(cidr: string, offset = 10): string {
  if (!IPV4_CIDR.test(cidr)) throw new Error(`${cidr} is not an IPv4 CIDR such as 10.0.1.0/24.`);
  const { base, size } = block(cidr);
  if (offset < 4 || offset >= size - 1) throw new Error(`${cidr} has no host ${offset}: it holds ${size} addresses, of which the cloud keeps the first four and the last.`);
  const n = base - (base % size) + offset;
  return [24, 16, 8, 0].map((sh) => Math.floor(n / 2 ** sh) % 256).join('.');
}

const ipv4 = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);

/** A CIDR's address as a number, and how many addresses it holds. */
function block(cidr: string): { base: number; size: number } {
  const [address, bits] = cidr.split('/');
  return { base: ipv4(address), size: 2 ** (32 - Number(bits)) };
}

/** Whether an IPv4 address lies inside an IPv4 CIDR (a host's fixed address inside its subnet). */
export function inCidr(address: string, cidr: string): boolean {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address) || address.split('.').some((o) => Number(o) > 255)) return false;
  const { base, size } = block(cidr);
  return Math.floor(ipv4(address) / size) === Math.floor(base / size);
}

/** Where the host script writes the DMZ client's config (a DmzClient document: no secret in it). */
export const CONFIG_FILE = '/etc/dmzfleet/dmz-client.yaml';

/** The DmzClient document (specs/schema/dmz-client.schema.json) of a data center: its driver's settings and boot URL. */
export function dmzClientConfig(dataCenter: string, spec: Record<string, unknown>): string {
  return stringify({ apiVersion: 'fleet/v1', kind: 'DmzClient', metadata: { dataCenter }, spec });
}

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

/** Whether a string is an IPv4 CIDR whose address is its network's first (10.20.1.0/24, not 10.20.1.7/24). */
function networkCidr(c: string): boolean {
  const m = IPV4_CIDR.exec(c);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) return false;
  const { base, size } = block(c);
  return base % size === 0;
}

/**
 * Throws, naming the input, when the network's address space or one of its
 * two subnets is not an IPv4 network CIDR, a subnet is outside the address
 * space, or the subnets overlap: the cloud would refuse each only after the
 * VPC or VNet and the rules naming them were made, half a DMZ deployed.
 * Checked when the component is declared, so `pulumi preview` fails first.
 */
export function checkNetworkCidrs(what: string, space: { name: string; cidr: string }, subnets: readonly { name: string; cidr: string }[]): void {
  for (const n of [space, ...subnets]) {
    if (typeof n.cidr !== 'string' || !networkCidr(n.cidr)) throw new Error(`${what}: ${n.name} ${String(n.cidr)} is not an IPv4 network CIDR such as 10.20.1.0/24 (its address the network's first).`);
  }
  const s = block(space.cidr);
  for (const n of subnets) {
    const b = block(n.cidr);
    if (b.size > s.size || Math.floor(b.base / s.size) !== Math.floor(s.base / s.size)) throw new Error(`${what}: ${n.name} ${n.cidr} is not inside ${space.name} ${space.cidr}.`);
  }
  for (let i = 0; i < subnets.length; i++) {
    for (let j = i + 1; j < subnets.length; j++) {
      const a = block(subnets[i].cidr);
      const b = block(subnets[j].cidr);
      if (a.base < b.base + b.size && b.base < a.base + a.size) throw new Error(`${what}: ${subnets[i].name} ${subnets[i].cidr} and ${subnets[j].name} ${subnets[j].cidr} overlap; the DMZ and the fleet each need a subnet of their own.`);
    }
  }
}

/**
 * The boot endpoint's port: the DMZ client serves /v1/boot on its API port
 * (`fleet serve dmz-client --port`), so another port would open the network
 * to a port nothing listens on and write a boot URL no VM could reach.
 */
export function bootPortOf(what: string, apiPort: number, bootPort: number | undefined): number {
  if (bootPort !== undefined && bootPort !== apiPort) {
    throw new Error(`${what}: bootPort ${bootPort} is not apiPort ${apiPort}, but the DMZ client serves its boot endpoint (/v1/boot) on its API port; leave bootPort unset.`);
  }
  return apiPort;
}

/**
 * The port the DMZ client reaches the authority on: its URL's, else https's
 * 443. A URL that is not https:// is refused (the DMZ client's --authority
 * takes http:// on loopback only).
 */
export function authorityPortOf(what: string, url: string): number {
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (!u || u.protocol !== 'https:' || u.hostname === '') throw new Error(`${what}: authorityUrl ${url} is not an https:// URL of the authority (e.g. https://authority.example:7400).`);
  return u.port === '' ? 443 : Number(u.port);
}

export interface ServeOptions {
  dataCenter: string;
  driver: 'aws' | 'azure';
  authorityUrl: string;
  port: number;
  /** Folder of the stack on the host (stack.yaml and its pack). */
  stackDir: string;
}

export interface HostScriptOptions extends ServeOptions {
  /** Shell command printing the host's secrets as one JSON object. */
  fetchSecrets: string;
  install: readonly string[];
  /** The DmzClient document (dmzClientConfig), written to CONFIG_FILE and passed as --config. */
  config: string;
}

/** The DMZ client's command line on the host. */
export function serveCommand(o: ServeOptions): string[] {
  return ['fleet', 'serve', 'dmz-client', '--data-center', o.dataCenter, '--driver', o.driver, '--config', CONFIG_FILE, '--authority', o.authorityUrl, '--host', '0.0.0.0', '--port', String(o.port), '--stack', o.stackDir];
}

/**
 * One word of a systemd command line (ExecStart=), as systemd.syntax(7) and
 * systemd.service(5) "Command lines" read it. A plain word (letters, digits,
 * `_./:@=,+-`) is single-quoted, as it always was, so the user data of an
 * existing host stays byte for byte the same (a changed script replaces the
 * host); any other is double-quoted with the C escapes systemd reads there
 * for a backslash and a quote, `%%` for a % (else a specifier) and `$$` for a
 * $ (else a variable). A control character cannot be written (a line break
 * ends the directive): hostScript refuses one first.
 */
const systemdWord = (s: string) => (/^[A-Za-z0-9_./:@=,+-]*$/.test(s) ? `'${s}'` : `"${s.replace(/[\\"]/g, '\\$&').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`);

/** A line of the unit inside its heredoc (<<UNIT, unquoted as it always was): bash's \, $ and ` escaped, so bash writes the line as it is. */
const heredocLine = (s: string) => s.replace(/[\\$`]/g, '\\$&');

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
export function hostScript(o: HostScriptOptions): string {
  // Written into the systemd unit: a line break there would be a directive of its own (ExecStartPre=...).
  for (const [k, v] of [['dataCenter', o.dataCenter], ['authorityUrl', o.authorityUrl], ['stackDir', o.stackDir]] as const) {
    // eslint-disable-next-line no-control-regex
    const bad = /[\u0000-\u001f\u007f]/.exec(v);
    if (bad) throw new Error(`${k} ${JSON.stringify(v)} holds U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}, a control character: it would break the DMZ client's systemd unit (a line break starts a directive of its own).`);
  }
  const tokenEnv = cliTokenEnv(o.dataCenter);
  const authEnv = authorityTokenEnv(o.dataCenter);
  // The config between quoted heredoc markers: the shell expands nothing in it. A marker line inside it would end it early.
  const marker = 'DMZFLEET_CONFIG_END';
  if (o.config.split('\n').includes(marker)) throw new Error(`the DMZ client config holds the line ${marker}`);
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
    `cat > ${CONFIG_FILE} <<'${marker}'`,
    ...o.config.replace(/\n$/, '').split('\n'),
    marker,
    `chown -R dmzfleet:dmzfleet /etc/dmzfleet && chmod 0600 /etc/dmzfleet/env /etc/dmzfleet/tls/*.pem ${CONFIG_FILE}`,
    // Its lines that carry a value go through heredocLine: bash expands nothing there (a data center name may hold $ or a backtick).
    'cat > /etc/systemd/system/dmzfleet-dmz-client.service <<UNIT',
    '[Unit]',
    heredocLine(`Description=dmzfleet DMZ client of data center ${o.dataCenter.replace(/%/g, '%%')}`),
    'After=network-online.target',
    '[Service]',
    'User=dmzfleet',
    'EnvironmentFile=/etc/dmzfleet/env',
    heredocLine(`ExecStart=/usr/bin/env ${serveCommand(o).map(systemdWord).join(' ')}`),
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
export function dataCenterEntry(facts: DataCenterFacts, address: string, cloud: Pick<DataCenterEntry, 'driver' | 'aws' | 'azure'>): DataCenterEntry {
  return {
    name: facts.name,
    address,
    location: { lat: facts.location.lat, lon: facts.location.lon },
    hardware: [...facts.hardware],
    capacity: { ...facts.capacity },
    auth: { tokenEnv: cliTokenEnv(facts.name) },
    ...cloud,
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
      dataCenters: entries.map((e) => ({
        name: e.name,
        address: e.address,
        location: e.location,
        hardware: e.hardware,
        capacity: e.capacity,
        auth: e.auth,
        driver: e.driver,
        ...(e.aws ? { aws: e.aws } : {}),
        ...(e.azure ? { azure: e.azure } : {}),
      })),
    },
  };
  return `# Written from a DMZ deployment (packages/dmz-infra); no entry holds a secret.\n${stringify(doc)}`;
}
