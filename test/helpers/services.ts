// A stack served as in a deployment, for whole-program tests of the
// services: a PostgreSQL record (the CLI and the services share it), the
// authority (`fleet serve orchestrator`, one or more replicas) and one DMZ
// client per data center (`fleet serve dmz-client`, sim driver), each
// writing its JSON-line logs to a buffer the test reads; the CLI runs
// in-process. The DMZ clients reach the authority through a round-robin
// proxy (test/helpers/proxy.ts) whose tap sees every exchange.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { RunningService } from '../../engine/authority/index.ts';
import { serveDmzClient, serveOrchestrator } from '../../engine/cli/commands/serve-run.ts';
import type { CliIO } from '../../engine/cli/io.ts';
import { createTestDatabase } from '../../engine/record/testing.ts';
import { runCli, type CliRun } from './cli.ts';
import { roundRobinProxy, type TestProxy } from './proxy.ts';
import { REPO } from './stack.ts';

export const DATA_CENTERS = ['miami', 'richmond'] as const;

export const stackYaml = (addresses: Record<string, string>, sim = '{ latencyMs: 2, bootMs: 2 }') => `apiVersion: fleet/v1
kind: Stack
metadata: { name: ops }
spec:
  specs: ["specs/*.yaml"]
  record: postgres://placeholder@127.0.0.1:5432/overridden-by-FLEET_RECORD_URL
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
${DATA_CENTERS.map(
  (dc, i) => `    - name: ${dc}
      address: ${addresses[dc] ?? 'http://127.0.0.1:1'}
      auth: { tokenEnv: FLEET_CLI_TOKEN_${dc.toUpperCase()} }
      location: { lat: ${25.7 + i * 12}, lon: -80.1 }
      hardware: [general]
      capacity: { vms: 100, cpu: 800, memoryGiB: 3200 }
      sim: ${sim}`,
).join('\n')}
`;

/** A buffer a service writes its stdout (its log lines) into. */
export class Captured {
  text = '';
  readonly stream = new PassThrough();
  constructor() {
    this.stream.on('data', (c: Buffer) => (this.text += c.toString()));
  }
  /** The JSON lines (the "listening on" line is plain text). */
  lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface ServedStack {
  dir: string;
  env: NodeJS.ProcessEnv;
  authorities: RunningService[];
  dmz: Record<string, RunningService>;
  /** The address the DMZ clients reach the authority at. */
  proxy: TestProxy;
  logs: { authority: Captured[]; dmz: Record<string, Captured> };
  fleet(...args: string[]): Promise<CliRun>;
  spec(name: string, yaml: string): Promise<void>;
  close(): Promise<void>;
}

export interface ServeOptions {
  pgUrl: string;
  /** Authority processes over the one record (default 1). */
  authorities?: number;
  /** --replicas given to each (default: the number of authorities). */
  replicas?: number;
  logLevel?: string;
  /** Every exchange between the DMZ clients and the authority. */
  tap?: (path: string, request: string, answer: string) => void;
  sim?: string;
  /** The data centers whose DMZ clients run in-process (default all; the test starts the others itself). */
  served?: readonly string[];
}

export async function serveStack(o: ServeOptions): Promise<ServedStack> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-ops-'));
  await mkdir(join(dir, 'specs'));
  const db = await createTestDatabase(o.pgUrl);
  const env: NodeJS.ProcessEnv = {
    FLEET_RECORD_URL: db.url,
    FLEET_AUTHORITY_SECRET: `secret-${Math.random().toString(36).slice(2)}-authority`,
    NO_COLOR: '1',
  };
  for (const dc of DATA_CENTERS) {
    env[`FLEET_DMZ_TOKEN_${dc.toUpperCase()}`] = `dmz-token-${dc}-${Math.random().toString(36).slice(2)}`;
    env[`FLEET_CLI_TOKEN_${dc.toUpperCase()}`] = `cli-token-${dc}-${Math.random().toString(36).slice(2)}`;
  }
  await writeFile(join(dir, 'stack.yaml'), stackYaml({}, o.sim));
  const io = (out: Captured): CliIO => ({ stdout: out.stream, stderr: process.stderr, stdin: process.stdin, cwd: dir, env });
  const logs = { authority: [] as Captured[], dmz: {} as Record<string, Captured> };
  const authorities: RunningService[] = [];
  const dmz: Record<string, RunningService> = {};
  const n = o.authorities ?? 1;
  for (let i = 0; i < n; i++) {
    const out = new Captured();
    logs.authority.push(out);
    authorities.push(await serveOrchestrator(io(out), { stack: dir, port: '0', host: '127.0.0.1', replicas: String(o.replicas ?? n), logLevel: o.logLevel ?? 'info' }));
  }
  const proxy = await roundRobinProxy(
    authorities.map((a) => a.url),
    o.tap,
  );
  for (const dc of DATA_CENTERS.filter((d) => (o.served ?? DATA_CENTERS).includes(d))) {
    const out = new Captured();
    logs.dmz[dc] = out;
    dmz[dc] = await serveDmzClient(io(out), { stack: dir, dataCenter: dc, driver: 'sim', authority: proxy.url, port: '0', host: '127.0.0.1', logLevel: o.logLevel ?? 'info' });
  }
  await writeFile(join(dir, 'stack.yaml'), stackYaml(Object.fromEntries(Object.entries(dmz).map(([dc, d]) => [dc, d.url])), o.sim));
  return {
    dir,
    env,
    authorities,
    dmz,
    proxy,
    logs,
    fleet: (...args) => runCli([...args, '--stack', dir], { cwd: REPO, env }),
    spec: (name, yaml) => writeFile(join(dir, 'specs', `${name}.yaml`), yaml),
    close: async () => {
      for (const d of Object.values(dmz)) await d.close();
      await proxy.close();
      for (const a of authorities) await a.close();
      await db.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
