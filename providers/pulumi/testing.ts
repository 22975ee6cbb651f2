// Test fixture of providers/pulumi: a stack on disk with two embedded data
// centers, started the way `fleet apply` starts them (providers/embedded.ts:
// a real authority and sim DMZ clients on loopback, a real record), and a
// stand-in for Pulumi's dynamic-provider host in a fresh Node process
// (host-child.mjs) that calls a provider serialized the way
// pulumi.dynamic.Resource serializes it.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { loadStack, type LoadedStack } from '../../engine/spec/index.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import { startEmbedded, type Embedded } from '../embedded.ts';
import type { ProviderSpec } from './serialize-child.ts';
import { toFleetStack, type FleetStack } from './stack.ts';

/** A one-data-center stack as the Pulumi resources carry it, for tests of the resources and providers alone (no data center runs). */
export const TEST_FLEET_STACK: FleetStack = {
  name: 'prod',
  site: { name: 'charlotte', location: { lat: 35.2, lon: -80.8 } },
  dataCenters: [{ name: 'miami', url: 'https://dmz.miami.example:8443', tokenEnv: 'FLEET_CLI_TOKEN_MIAMI', location: { lat: 25.7, lon: -80.1 }, hardware: ['general'], capacity: {} }],
  lifecycle: { states: ['Requested', 'Running', 'Deleted'], initial: 'Requested', terminal: ['Deleted'], requestable: ['Running'], failure: [], transitions: [{ from: 'Requested', to: 'Running', operation: 'createVm' }, { from: 'Running', to: 'Deleted', operation: 'deleteVm' }] },
  images: { 'ubuntu-22.04': { miami: 'img-1' } },
  capacityEnforcement: 'mandatory',
};

export interface EmbeddedStack {
  dir: string;
  stack: LoadedStack;
  pack: LoadedPack;
  record: FleetRecord;
  embedded: Embedded;
  /** The stack as the Pulumi resources carry it, with the embedded DMZ clients' URLs. */
  fleetStack: FleetStack;
  /** The DMZ client token of each data center (what a program passes as a secret). */
  tokens: Record<string, string>;
  close(): Promise<void>;
}

export async function startEmbeddedStack(): Promise<EmbeddedStack> {
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-pulumi-'));
  await mkdir(join(dir, 'specs'));
  await writeFile(
    join(dir, 'specs', 'none.yaml'),
    '# The Pulumi program declares its fleets; this stack keeps none in files.\n',
  );
  const packDir = join(import.meta.dirname, '..', '..', 'policies', 'default');
  await writeFile(
    join(dir, 'stack.yaml'),
    `apiVersion: fleet/v1
kind: Stack
metadata: { name: pulumi-test }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack:
    path: ${JSON.stringify(packDir)}
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 50, cpu: 200, memoryGiB: 800 }
      sim: { latencyMs: 1 }
    - name: richmond
      address: embedded
      location: { lat: 37.5407, lon: -77.4360 }
      hardware: [general]
      capacity: { vms: 50, cpu: 200, memoryGiB: 800 }
      sim: { latencyMs: 1 }
`,
  );
  const loaded = await loadStack(dir, { cwd: dir });
  if (!loaded.stack || !loaded.pack) throw new Error(`bug: fixture stack does not load: ${JSON.stringify(loaded.diagnostics)}`);
  const record = await openRecord('memory://');
  const embedded = await startEmbedded({ stack: loaded.stack, pack: loaded.pack, record });
  const urls: Record<string, string> = {};
  const tokens: Record<string, string> = {};
  for (const [name, c] of embedded.clients) {
    urls[name] = c.url;
    tokens[name] = c.token;
  }
  const fleetStack = toFleetStack(loaded.stack, loaded.pack, { urls, retries: 1, timeoutMs: 30_000 });
  return {
    dir,
    stack: loaded.stack,
    pack: loaded.pack,
    record,
    embedded,
    fleetStack,
    tokens,
    close: async () => {
      await embedded.close();
      await record.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A loopback URL nothing listens on (a DMZ client that is down). */
export async function downUrl(): Promise<string> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return `http://127.0.0.1:${port}`;
}

/**
 * What pulumi.dynamic.Resource stores in the state for each provider
 * (serializeFunction, secrets allowed), made in one tsx child process
 * (serialize-child.ts says why not here), with `env` added to its
 * environment (a program run with the tokens in its variables).
 */
export async function serializeProviders<K extends string>(specs: Record<K, ProviderSpec>, env: Record<string, string> = {}): Promise<Record<K, string>> {
  const child = execFile(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'serialize-child.ts')], { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  child.stdin?.end(JSON.stringify(specs));
  const [code] = (await once(child, 'close')) as [number];
  if (code !== 0) throw new Error(`bug: serialize-child.ts exited ${code}: ${err}`);
  return JSON.parse(out) as Record<K, string>;
}

/** What the host saw of a rejection. */
export interface HostError {
  isError: boolean;
  name: string | null;
  message: string | null;
  stack: string | null;
  diagnostics: { code: string; summary: string; detail: string; address?: string }[] | null;
  id: string | null;
  properties: Record<string, unknown> | null;
  reasons: string[] | null;
}

export type HostAnswer<T = unknown> = { ok: true; value: T } | { ok: false; error: HostError };

/** A serialized provider loaded in a fresh Node process, as Pulumi's dynamic-provider host loads it. */
export class ProviderHost {
  private n = 0;
  private readonly waiting = new Map<number, (a: HostAnswer) => void>();
  private stderr = '';

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const a = JSON.parse(line) as HostAnswer & { n: number };
      this.waiting.get(a.n)?.(a);
      this.waiting.delete(a.n);
    });
    child.stderr.on('data', (b: Buffer) => (this.stderr += b.toString()));
    child.on('exit', (code) => {
      for (const w of this.waiting.values()) w({ ok: false, error: { isError: false, name: 'exit', message: `host exited ${code}: ${this.stderr}`, stack: null, diagnostics: null, id: null, properties: null, reasons: null } });
      this.waiting.clear();
    });
  }

  /** `env` is the whole environment of the host process (no token unless given here). */
  static async start(text: string, env: Record<string, string> = {}): Promise<ProviderHost> {
    const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-host-'));
    const file = join(dir, 'provider.js');
    await writeFile(file, text, { mode: 0o600 });
    const child = spawn(process.execPath, [join(import.meta.dirname, 'host-child.mjs'), file], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const host = new ProviderHost(child);
    child.on('exit', () => void rm(dir, { recursive: true, force: true }));
    return host;
  }

  call<T = unknown>(method: string, ...args: unknown[]): Promise<HostAnswer<T>> {
    const n = ++this.n;
    return new Promise((resolve) => {
      this.waiting.set(n, resolve as (a: HostAnswer) => void);
      this.child.stdin.write(`${JSON.stringify({ n, method, args })}\n`);
    });
  }

  /** The call's value; throws (failing the test) with what the host saw when it rejected. */
  async ok<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const a = await this.call<T>(method, ...args);
    if (!a.ok) throw new Error(`${method} rejected in the host: ${a.error.message}\n${a.error.stack ?? ''}`);
    return a.value;
  }

  /** The call's rejection as the host saw it; throws when it resolved. */
  async rejected(method: string, ...args: unknown[]): Promise<HostError> {
    const a = await this.call(method, ...args);
    if (a.ok) throw new Error(`${method} resolved in the host: ${JSON.stringify(a.value)}`);
    return a.error;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin.end();
    this.child.kill();
    await exited;
  }
}

/**
 * A proxy in front of a DMZ client that forwards requests until one whose
 * body holds `trigger`; that one and every later one are refused (401), as a
 * DMZ client that went away mid-call. Closes with `close()`.
 */
export async function failingProxy(target: string, trigger: string): Promise<{ url: string; close(): Promise<void> }> {
  const { createServer, request } = await import('node:http');
  const to = new URL(target);
  let down = false;
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (down || body.includes(trigger)) {
        down = true;
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthorized', message: 'the bearer token is not valid here' } }));
        return;
      }
      const up = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.end(body);
    });
  });
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise((ok) => proxy.close(ok));
    },
  };
}
