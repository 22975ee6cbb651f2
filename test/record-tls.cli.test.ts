// A PostgreSQL record URL with `sslmode=require` (or prefer, verify-ca), run as a person runs the CLI (its own
// process: what reaches its stderr is what they read). node-postgres printed its own multi-line "(node:PID) Warning:
// SECURITY WARNING: The SSL modes 'prefer', 'require', and 'verify-ca' are treated as aliases for 'verify-full' …"
// ahead of fleet's diagnostic; the diagnostic is now all there is, and says what the warning did that a person needs.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, tempStack, type TempStack } from './helpers/stack.ts';

/** A PostgreSQL server without TLS, as far as a client asking for it can tell: it answers the SSLRequest with `N`. */
async function serverWithoutTls(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.once('data', () => socket.write('N'));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address');
  return { server, port: addr.port };
}

function fleet(args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), ...args], { cwd, env: { ...process.env, NO_COLOR: '1', FLEET_RECORD_URL: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('a PostgreSQL record URL with sslmode=require, to a server without TLS', () => {
  let stack: TempStack;
  let pg: { server: Server; port: number };
  beforeAll(async () => {
    stack = await tempStack({ name: 'tlsless' });
    pg = await serverWithoutTls();
  });
  afterAll(async () => {
    await new Promise((resolve) => pg?.server.close(resolve));
    await stack?.remove();
  });

  it.each(['require', 'prefer', 'verify-ca'])('sslmode=%s: stderr is fleet\'s diagnostic alone', async (mode) => {
    const url = `postgres://postgres@127.0.0.1:${pg.port}/x?sslmode=${mode}`;
    const r = await fleet(['state', 'list', '--stack', stack.dir, '--record-url', url], stack.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('Warning');
    expect(r.stderr).toMatch(/^error\[record\.unreachable\]: Record database unreachable\n/);
    expect(r.stderr).toContain(`cannot use the PostgreSQL record at 127.0.0.1:${pg.port} (${url}): the connection could not be made: The server does not support SSL connections.`);
    // What the warning said that matters to a person choosing sslmode.
    expect(r.stderr).toContain(`node-postgres takes sslmode=${mode} as verify-full`);
  });
});
