// The boot agent real VMs run (agent.sh beside this file), rendered into
// user data (AWS) or custom data (Azure) with the settings of one boot. The
// rendered text holds the one-time boot token of that boot and never a disk
// key: the VM receives its key from the boot endpoint only once the
// authority approves the boot.
import { readFileSync } from 'node:fs';
import { DriverError } from '../drivers/types.ts';

export const AGENT_SCRIPT_PATH = new URL('./agent.sh', import.meta.url);

let script: string | undefined;
/** agent.sh as shipped. */
export function agentScript(): string {
  script ??= readFileSync(AGENT_SCRIPT_PATH, 'utf8');
  return script;
}

export interface AgentSettings {
  /** The DMZ client's boot endpoint as the VM reaches it (POST; `<url>/status` for reports). */
  bootUrl: string;
  vmId: string;
  /** The cloud's id of the VM; empty at first launch when the cloud has not named it yet. */
  cloudId: string;
  image: string;
  /** One-time token of this boot; absent at first launch (the agent then does nothing). */
  bootToken?: string;
  encrypted: boolean;
  /** Block device of the encrypted data volume. */
  dataDevice: string;
  /**
   * PEM CA bundle the agent verifies an https boot endpoint with (the DMZ
   * client's --boot-ca); absent: the image's system CAs. Public: no secret.
   */
  bootCa?: string;
  /**
   * FLEET_BOOT_WINDOW: the seconds the agent's whole handshake (its reports and the boot request, with
   * every retry) may take from its start; `agentWindowSeconds` of the DMZ client's awaitReady wait.
   * Absent: the script's default, agentWindowSeconds(CLOUD_READY_TIMEOUT_MS).
   */
  windowSeconds?: number;
}

/**
 * How long the DMZ client of a cloud (aws, azure) waits for a booting VM's agent (awaitReady) when its
 * config does not say (spec.readyTimeoutMs): a cloud VM's boot (OS, cloud-init, the agent) takes minutes.
 */
export const CLOUD_READY_TIMEOUT_MS = 600_000;

/**
 * Of awaitReady's wait, what the agent's window leaves for the instance to start and cloud-init to run
 * the agent (awaitReady starts when the cloud has started the instance; the agent, once its OS is up),
 * and for the agent's last report: 2 minutes, or half the wait when that is shorter.
 */
export const AGENT_START_ALLOWANCE_MS = 120_000;

/**
 * The agent's boot window (FLEET_BOOT_WINDOW, seconds) for a DMZ client that waits `readyTimeoutMs` for
 * its boot. The agent stops asking once it is spent, reports the failure and powers off, so the boot
 * fails inside awaitReady with the agent's reason, instead of awaitReady timing out while the agent
 * still asks: asked again after every Retry-After (at most 60 s, 12 tries for each of its three
 * requests), it could ask for half an hour, and a boot approved after the wait ended left a VM running
 * with its disk open that the record held BootFailed. agent.sh's default is this of CLOUD_READY_TIMEOUT_MS
 * (agent.test.ts checks they agree).
 */
export function agentWindowSeconds(readyTimeoutMs: number = CLOUD_READY_TIMEOUT_MS): number {
  return Math.max(1, Math.floor((readyTimeoutMs - Math.min(AGENT_START_ALLOWANCE_MS, readyTimeoutMs / 2)) / 1000));
}

/** A value in single quotes, safe for sh. */
function shQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

/**
 * The most bytes of rendered user data each cloud takes: EC2 16 KiB raw
 * (before base64); Azure's userData 64 KiB once base64-encoded (48 KiB raw).
 */
export const USER_DATA_MAX_BYTES = { aws: 16 * 1024, azure: ((64 * 1024) / 4) * 3 } as const;

/** Rendered user data over the cloud's limit: a failed driver call, before the cloud sees it. */
export class UserDataTooLarge extends DriverError {
  constructor(message: string) {
    super('failed', message);
  }
}

/**
 * MIME boundary of the cloud-init wrapper; no line of the script may start with `--` and it (checked at render).
 */
const MIME_BOUNDARY = '==dmzfleet-boot-agent==';

/**
 * The cloud-config part of the cloud-init wrapper. Stock cloud-init runs a user-data script
 * (module scripts-user) once per instance; a stopped and started EC2 instance keeps its
 * instance id, so its later boots would run no agent. Setting scripts-user's frequency to
 * `always` (cloud-init's documented module frequency; AWS's documented way to run user data
 * at every start) makes cloud-init run the script part at every boot. cloud_final_modules
 * replaces the image's list of final-stage modules: the agent's images need none of the others.
 */
export const CLOUD_CONFIG_EVERY_BOOT = '#cloud-config\ncloud_final_modules:\n- [scripts-user, always]\n';

/**
 * `script` as a MIME multi-part user data cloud-init reads: the cloud-config part that runs
 * user scripts at every boot, then the script.
 */
function wrapForCloudInit(script: string): string {
  if (script.split('\n').some((l) => l.startsWith(`--${MIME_BOUNDARY}`))) {
    throw new Error('the boot agent\'s user data holds a line starting with its MIME boundary');
  }
  const part = (type: string, name: string, body: string): string =>
    `--${MIME_BOUNDARY}\nContent-Type: ${type}; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename="${name}"\n\n${body}`;
  return (
    `Content-Type: multipart/mixed; boundary="${MIME_BOUNDARY}"\nMIME-Version: 1.0\n\n` +
    part('text/cloud-config', 'dmzfleet-every-boot.cfg', CLOUD_CONFIG_EVERY_BOOT) +
    '\n' +
    part('text/x-shellscript', 'dmzfleet-boot-agent.sh', script) +
    `\n--${MIME_BOUNDARY}--\n`
  );
}

export interface RenderOptions {
  /**
   * Wrap the script for cloud-init so that it runs at every boot of the instance (EC2, where
   * the user data is what cloud-init runs). Azure's agent comes from userData through the
   * bootstrap's service (providers/drivers/azure/bootstrap.ts), not through cloud-init: no wrapper.
   */
  cloudInitEveryBoot?: boolean;
}

/**
 * The user data / custom data of one boot: `#!/bin/sh`, the settings, then
 * agent.sh (inside the cloud-init wrapper when `opts.cloudInitEveryBoot`).
 * Throws UserDataTooLarge when it comes to more than `maxBytes` (default:
 * EC2's limit, the smallest), wrapper included, naming the longest setting.
 */
export function renderAgentUserData(s: AgentSettings, maxBytes: number = USER_DATA_MAX_BYTES.aws, opts: RenderOptions = {}): string {
  const vars: [string, string][] = [
    ['FLEET_BOOT_URL', s.bootUrl],
    ['FLEET_VM_ID', s.vmId],
    ['FLEET_CLOUD_ID', s.cloudId],
    ['FLEET_IMAGE', s.image],
    ['FLEET_BOOT_TOKEN', s.bootToken ?? ''],
    ['FLEET_ENCRYPTED', s.encrypted ? '1' : '0'],
    ['FLEET_DATA_DEVICE', s.dataDevice],
    ['FLEET_BOOT_CA', s.bootCa ?? ''],
    ...(s.windowSeconds !== undefined ? ([['FLEET_BOOT_WINDOW', String(Math.max(1, Math.floor(s.windowSeconds)))]] as [string, string][]) : []),
  ];
  const header = vars.map(([k, v]) => `${k}=${shQuote(v)}`).join('\n');
  const script = `#!/bin/sh\n# dmzfleet boot agent settings of this boot (providers/boot-agent)\n${header}\n${agentScript()}`;
  const text = opts.cloudInitEveryBoot ? wrapForCloudInit(script) : script;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxBytes) {
    const [name, value] = vars.reduce((a, b) => (Buffer.byteLength(b[1]) > Buffer.byteLength(a[1]) ? b : a));
    throw new UserDataTooLarge(
      `the boot agent's user data for VM ${s.vmId.slice(0, 80)} would be ${bytes} bytes, over the cloud's limit of ${maxBytes}; its longest setting is ${name} (${Buffer.byteLength(value)} bytes): shorten it (a bootUrl comes from the DMZ client config's spec.bootUrl)`,
    );
  }
  return text;
}

/** The settings back from rendered user data (fake clouds in tests run it; drivers read the boot token's presence). */
export function parseAgentUserData(text: string): Partial<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^(FLEET_[A-Z_]+)='((?:[^']|'\\'')*)'$/gm)) out[m[1]] = m[2].replace(/'\\''/g, "'");
  return out;
}
