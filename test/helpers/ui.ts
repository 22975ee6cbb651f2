// `fleet ui` as its own process, the way a person runs it beside `fleet
// apply`: started on a free port, stopped with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './stack.ts';

export interface FleetUi {
  /** The dashboard's first page, http://127.0.0.1:PORT/ui */
  url: string;
  /** Everything the process printed so far. */
  output(): { stdout: string; stderr: string };
  /** SIGTERM, then its exit code. */
  stop(): Promise<number | null>;
}

export async function startFleetUi(stackDir: string, env: NodeJS.ProcessEnv = {}): Promise<FleetUi> {
  const child: ChildProcess = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'ui', '--stack', stackDir, '--port', '0'], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', FLEET_ADMIN_TOKEN: '', FLEET_READ_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString();
      const m = /dashboard listening on (\S+)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    void exited.then((code) => reject(new Error(`fleet ui exited (${code}) before listening:\n${stdout}${stderr}`)));
  });
  return {
    url,
    output: () => ({ stdout, stderr }),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Signs in with `token`; answers the session cookie (`name=value`). */
export async function signIn(url: string, token: string): Promise<string> {
  const res = await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${encodeURIComponent(token)}`, redirect: 'manual' });
  if (res.status !== 303) throw new Error(`sign-in answered ${res.status}: ${await res.text()}`);
  return (res.headers.get('set-cookie') ?? '').split(';')[0];
}
