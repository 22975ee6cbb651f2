// CLI tests of a pack's own rule modules: a temp pack (the default pack's
// policy.yaml with the modules added) beside a stack of one embedded data
// center that uses it, and `fleet` run as a child process of the built CLI
// (a rule that never returns must be stopped by the process itself, and
// rule modules load as they do for a user).
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');
const FLEET = join(REPO, 'bin', 'fleet.mjs');

export interface ChildRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** `fleet ARGS` as a child process in `cwd` (no colour), killed after `timeoutMs` (a hang fails the case). */
export function fleetChild(args: string[], cwd: string, opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ChildRun> {
  return new Promise((done) => {
    execFile(process.execPath, [FLEET, ...args], { cwd, env: { ...process.env, NO_COLOR: '1', ...opts.env }, timeout: opts.timeoutMs ?? 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: string }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

/**
 * Writes `<tmp>/pack` (the default policy.yaml with `rules` as its modules, under
 * rules/, plus `packLines` after the modules line and `tests` under tests/)
 * and `<tmp>/stack` (stack `name`, one embedded data center miami, its `specs`
 * under specs/). Returns both folders.
 */
export function customRuleStack(
  tmp: string,
  opts: { name: string; rules: Record<string, string>; packLines?: string[]; tests?: Record<string, string>; specs?: Record<string, string> },
): { pack: string; stack: string } {
  const pack = join(tmp, 'pack');
  const stack = join(tmp, 'stack');
  cpSync(join(REPO, 'policies', 'default', 'policy.yaml'), join(pack, 'policy.yaml'));
  const policy = readFileSync(join(pack, 'policy.yaml'), 'utf8');
  const modules = Object.keys(opts.rules).map((f) => `rules/${f}`);
  const lines = [`  modules: [${modules.join(', ')}]`, ...(opts.packLines ?? []).map((l) => `  ${l}`)];
  writeFileSync(join(pack, 'policy.yaml'), policy.replace(/^ {2}rules:$/m, `${lines.join('\n')}\n  rules:`));
  mkdirSync(join(pack, 'rules'));
  for (const [file, text] of Object.entries(opts.rules)) writeFileSync(join(pack, 'rules', file), text);
  if (opts.tests) {
    mkdirSync(join(pack, 'tests'));
    for (const [file, text] of Object.entries(opts.tests)) writeFileSync(join(pack, 'tests', file), text);
  }
  mkdirSync(join(stack, 'specs'), { recursive: true });
  writeFileSync(
    join(stack, 'stack.yaml'),
    `apiVersion: fleet/v1
kind: Stack
metadata: { name: ${opts.name} }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ../pack }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 100 } }
`,
  );
  for (const [file, text] of Object.entries(opts.specs ?? {})) writeFileSync(join(stack, 'specs', file), text);
  return { pack, stack };
}
