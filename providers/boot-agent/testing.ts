// Test support: what a VM image gives the boot agent, faked on this host.
// `cryptsetup` records its arguments and the sha256 of what it read on
// stdin (never the key itself) under the VM's folder, and keeps a LUKS
// "header" (the key's hash) so a wrong key does not open the volume;
// `poweroff` leaves a mark the fake cloud reads when the agent exits;
// `sleep` returns at once and records how long it was asked to wait (a
// test reads the agent's pauses without waiting them out); it moves the VM's
// clock on by that much instead, which `date +%s` reads (the agent's boot
// window, FLEET_BOOT_WINDOW, then counts the pauses and nothing else).
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';

const CRYPTSETUP = `#!/bin/sh
dir=\${FAKE_VM_DIR:?}
echo "$*" >> "$dir/cryptsetup.argv"
hash() { sha256sum | cut -d' ' -f1; }
case "$1" in
  isLuks) [ -f "$dir/luks-header" ]; exit $? ;;
  luksFormat) h=$(hash); echo "$h" >> "$dir/cryptsetup.stdin-sha256"; echo "$h" > "$dir/luks-header"; exit 0 ;;
  open)
    h=$(hash); echo "$h" >> "$dir/cryptsetup.stdin-sha256"; [ "$h" = "$(cat "$dir/luks-header")" ] || exit 2
    case " $* " in *' --test-passphrase '*) exit 0 ;; esac
    shift $(($# - 2)); dev=$1; name=$2; mapper=\${FLEET_MAPPER_DIR:-$dir/mapper}
    # Like cryptsetup: a name already mapped is not opened again.
    [ -e "$mapper/$name" ] && { echo "Device $name already exists." >&2; exit 5; }
    mkdir -p "$mapper" && touch "$mapper/$name" && echo "$dev" > "$dir/mapped-device"; touch "$dir/opened"; exit 0 ;;
  status) [ -f "$dir/mapped-device" ] || exit 4; echo "/dev/mapper/$2 is active."; echo "  type:    LUKS2"; echo "  device:  $(cat "$dir/mapped-device")"; exit 0 ;;
esac
exit 3
`;

const POWEROFF = `#!/bin/sh
touch "\${FAKE_VM_DIR:?}/powered-off"
`;

/** The fake clock's start (seconds since the epoch), before any pause. */
const FAKE_EPOCH = 1_800_000_000;

const SLEEP = `#!/bin/sh
echo "$*" >> "\${FAKE_VM_DIR:?}/sleep.argv"
clock=$(cat "$FAKE_VM_DIR/clock" 2>/dev/null || echo ${FAKE_EPOCH})
echo $((clock + $1)) > "$FAKE_VM_DIR/clock"
`;

const DATE = `#!/bin/sh
if [ "$*" = +%s ]; then cat "\${FAKE_VM_DIR:?}/clock" 2>/dev/null || echo ${FAKE_EPOCH}; exit 0; fi
for d in /usr/bin /bin; do [ -x "$d/date" ] && exec "$d/date" "$@"; done
exit 127
`;

/** Writes the fake `cryptsetup`, `poweroff`, `sleep` and `date` into `binDir`. */
export async function writeFakeVmTools(binDir: string): Promise<void> {
  await mkdir(binDir, { recursive: true });
  for (const [name, text] of [
    ['cryptsetup', CRYPTSETUP],
    ['poweroff', POWEROFF],
    ['sleep', SLEEP],
    ['date', DATE],
  ]) {
    await writeFile(join(binDir, name), text);
    await chmod(join(binDir, name), 0o755);
  }
}

export interface AgentRun {
  code: number | null;
  stdout: string;
  stderr: string;
  poweredOff: boolean;
  opened: boolean;
  /** The pauses the agent asked `sleep` for, in order (its arguments). */
  slept: string[];
}

/** The VM under vmDir stops: its device mappings (the fake /dev/mapper) are gone. */
export function stopFakeVm(vmDir: string): void {
  rmSync(join(vmDir, 'mapper'), { recursive: true, force: true });
  rmSync(join(vmDir, 'mapped-device'), { force: true });
}

/**
 * Runs rendered user data with sh as a VM would, the fake tools first on PATH, the VM's files under vmDir
 * (its /dev/mapper: vmDir/mapper, FLEET_MAPPER_DIR);
 * `env`: the agent's optional settings (FLEET_RETRY_SECONDS, …) as an image would set them.
 * `slept`: the pauses of this run (the fake `sleep` waits none of them).
 */
export async function runUserData(userData: string, binDir: string, vmDir: string, env: Record<string, string> = {}): Promise<AgentRun> {
  await mkdir(vmDir, { recursive: true });
  const sleeps = join(vmDir, 'sleep.argv');
  rmSync(sleeps, { force: true });
  rmSync(join(vmDir, 'clock'), { force: true });
  const child = spawn('sh', ['-s'], {
    env: { FLEET_MAPPER_DIR: join(vmDir, 'mapper'), ...env, PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, FAKE_VM_DIR: vmDir, HOME: vmDir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(userData);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const slept = existsSync(sleeps) ? readFileSync(sleeps, 'utf8').split('\n').filter(Boolean) : [];
  return { code, stdout, stderr, poweredOff: existsSync(join(vmDir, 'powered-off')), opened: existsSync(join(vmDir, 'opened')), slept };
}

/**
 * What stock cloud-init does with an instance's user data at one boot, as far as the boot agent
 * meets it (cloud-init docs, "User data formats" and "Module frequency"): the user data is a
 * `#!` script, a `#cloud-config` document, or a MIME multi-part of them (text/x-shellscript,
 * text/cloud-config); module scripts-user runs the scripts once per instance unless a cloud-config
 * part's `cloud_final_modules` lists it with frequency `always`. `ranBefore`: scripts-user ran at
 * an earlier boot of this instance (a stopped and started EC2 instance keeps its instance id).
 * Answers the scripts this boot runs.
 */
export function cloudInitBoot(userData: string, ranBefore: boolean): string[] {
  const parts: { type: string; body: string }[] = [];
  const sniff = (body: string, type = ''): { type: string; body: string } => ({
    type: type || (body.startsWith('#!') ? 'text/x-shellscript' : body.startsWith('#cloud-config') ? 'text/cloud-config' : 'text/plain'),
    body,
  });
  const top = /^Content-Type:\s*multipart\/mixed;\s*boundary="?([^"\n]+)"?/im.exec(userData.slice(0, userData.indexOf('\n\n') + 1));
  if (top && !userData.startsWith('#')) {
    const boundary = `--${top[1]}`;
    const chunks = userData.split('\n').reduce<string[][]>((acc, line) => {
      if (line === boundary || line === `${boundary}--`) acc.push([]);
      else acc.at(-1)?.push(line);
      return acc;
    }, []);
    for (const lines of chunks) {
      const blank = lines.indexOf('');
      if (blank < 0) continue;
      const type = /^Content-Type:\s*([^;\s]+)/im.exec(lines.slice(0, blank).join('\n'))?.[1] ?? '';
      parts.push(sniff(lines.slice(blank + 1).join('\n'), type));
    }
  } else {
    parts.push(sniff(userData));
  }
  let frequency = 'once-per-instance';
  for (const p of parts.filter((x) => x.type === 'text/cloud-config')) {
    const cfg = parseYaml(p.body) as { cloud_final_modules?: (string | string[])[] } | null;
    for (const m of cfg?.cloud_final_modules ?? []) {
      const [name, freq] = Array.isArray(m) ? m : [m];
      if (name === 'scripts-user' || name === 'scripts_user') frequency = freq ?? 'once-per-instance';
    }
  }
  if (ranBefore && frequency !== 'always') return [];
  return parts.filter((x) => x.type === 'text/x-shellscript').map((x) => x.body);
}
