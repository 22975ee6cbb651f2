import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

export interface Worker {
  child: ChildProcess;
  /** Resolves with the first stdout line matching `re`. */
  line(re: RegExp): Promise<string>;
  lines: string[];
  stderr(): string;
  exited: Promise<number | null>;
}

/** Starts engine/record/testdata/worker.ts in its own Node process (through tsx). */
export function startWorker(args: string[], env: NodeJS.ProcessEnv = {}): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.re.test(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    line: (re) => {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        waiters.push({ re, resolve });
        void exited.then((code) => reject(new Error(`worker exited (${code}) before printing ${re}: ${err}`)));
      });
    },
  };
}

/**
 * Two worker processes open `url` at once (each `open URL --wait`, released together): what each printed (OPENED,
 * or ERR …) and how each exited. `start` starts a worker (the caller's, to kill what is left after its test).
 */
export async function openAtOnce(url: string, start: (args: string[]) => Worker): Promise<{ opened: string[]; exited: (number | null)[] }> {
  const ws = [start(['open', url, '--wait']), start(['open', url, '--wait'])];
  await Promise.all(ws.map((w) => w.line(/^READY$/)));
  for (const w of ws) w.child.stdin!.write('go\n');
  const opened = await Promise.all(ws.map((w) => w.line(/^(OPENED|ERR)/)));
  for (const w of ws) w.child.stdin!.end();
  return { opened, exited: await Promise.all(ws.map((w) => w.exited)) };
}
