// Test support: what a VM image gives the boot agent, faked on this host.
// `cryptsetup` records its arguments and the sha256 of what it read on
// stdin (never the key itself) under the VM's folder, and keeps a LUKS
// "header" (the key's hash) so a wrong key does not open the volume;
// `poweroff` leaves a mark the fake cloud reads when the agent exits.
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const CRYPTSETUP = `#!/bin/sh
dir=\${FAKE_VM_DIR:?}
echo "$*" >> "$dir/cryptsetup.argv"
hash() { sha256sum | cut -d' ' -f1; }
case "$1" in
  isLuks) [ -f "$dir/luks-header" ]; exit $? ;;
  luksFormat) h=$(hash); echo "$h" >> "$dir/cryptsetup.stdin-sha256"; echo "$h" > "$dir/luks-header"; exit 0 ;;
  open) h=$(hash); echo "$h" >> "$dir/cryptsetup.stdin-sha256"; [ "$h" = "$(cat "$dir/luks-header")" ] || exit 2; touch "$dir/opened"; exit 0 ;;
esac
exit 3
`;

const POWEROFF = `#!/bin/sh
touch "\${FAKE_VM_DIR:?}/powered-off"
`;

/** Writes the fake `cryptsetup` and `poweroff` into `binDir`. */
export async function writeFakeVmTools(binDir: string): Promise<void> {
  await mkdir(binDir, { recursive: true });
  await writeFile(join(binDir, 'cryptsetup'), CRYPTSETUP);
  await writeFile(join(binDir, 'poweroff'), POWEROFF);
  await chmod(join(binDir, 'cryptsetup'), 0o755);
  await chmod(join(binDir, 'poweroff'), 0o755);
}

export interface AgentRun {
  code: number | null;
  stdout: string;
  stderr: string;
  poweredOff: boolean;
  opened: boolean;
}

/**
 * Runs rendered user data with sh as a VM would, the fake tools first on PATH, the VM's files under vmDir;
 * `env`: the agent's optional settings (FLEET_RETRY_SECONDS, …) as an image would set them.
 */
export async function runUserData(userData: string, binDir: string, vmDir: string, env: Record<string, string> = {}): Promise<AgentRun> {
  await mkdir(vmDir, { recursive: true });
  const child = spawn('sh', ['-s'], {
    env: { ...env, PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, FAKE_VM_DIR: vmDir, HOME: vmDir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(userData);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr, poweredOff: existsSync(join(vmDir, 'powered-off')), opened: existsSync(join(vmDir, 'opened')) };
}
