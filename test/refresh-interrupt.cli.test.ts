// Ctrl-C during `fleet refresh`. A refresh that writes holds the locks of the fleets it refreshes; it had no signal
// handler, so Node's default SIGINT killed it on the spot, silently (no line on stderr), and left those locks held:
// for their 30 s lease every further `fleet refresh` skipped the fleets (apply.refresh-locked) and `fleet state rm` /
// `fleet import` were refused, until an apply broke them. A data center that does not answer its listing (the sim's
// hangCalls: [list]) holds the refresh under its locks, so the Ctrl-C lands there every time.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml, oneDcStackYaml, useTempStack } from './helpers/stack.ts';

interface Listed {
  locks: { fleet: string; pid: number }[];
}

async function locks(dir: string): Promise<Listed['locks']> {
  const r = await runCli(['state', 'list', '--format', 'json', '--stack', dir], { cwd: REPO });
  return (JSON.parse(r.stdout) as Listed).locks;
}

describe('fleet refresh: Ctrl-C', () => {
  const st = useTempStack();

  it.each([
    { sig: 'SIGINT', args: ['refresh'] },
    { sig: 'SIGTERM', args: ['refresh'] },
    { sig: 'SIGINT', args: ['plan', '--refresh'] },
  ] as const)('$sig during fleet $args.0 while it holds its locks: it stops, says so, releases them and exits 130', async ({ sig, args }) => {
    await writeFile(join(st.dir, 'stack.yaml'), oneDcStackYaml('refresh-int'));
    await st.spec('web', fleetYaml('web', { count: 1 }));
    expect((await st.fleet('apply', '--yes')).code).toBe(0);
    // Every listing hangs from now on.
    await writeFile(join(st.dir, 'stack.yaml'), oneDcStackYaml('refresh-int').replace('failCalls: []', 'failCalls: [], hangCalls: [list]'));
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), ...args, '--stack', st.dir], { cwd: REPO, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => child.on('exit', (code, signal) => resolveExit({ code, signal })));
    // Wait for its lock (a polled condition with a deadline), then interrupt it.
    const deadline = Date.now() + 30_000;
    while (!(await locks(st.dir)).some((l) => l.pid === child.pid)) {
      if (Date.now() > deadline) throw new Error(`the refresh never took its lock; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill(sig);
    const { code, signal } = await exited;
    expect({ code, signal }, stderr).toEqual({ code: 130, signal: null });
    expect(stderr).toContain(`${sig}: stopping the refresh`);
    expect(stderr).toContain('Refresh interrupted');
    expect(await locks(st.dir)).toEqual([]);
  });
});
