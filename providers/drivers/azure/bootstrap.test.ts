// The bootstrap's watcher, run by sh against a local stand-in for the
// instance metadata service: each new userData script runs once, an old one
// never again, and the bootstrap itself parses as sh.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WATCHER, azureBootstrap } from './bootstrap.ts';

const run = promisify(execFile);

let dir: string;
let imds: Server;
let userData = '';
const seen: string[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleet-azure-boot-'));
  imds = createServer((req, res) => {
    seen.push(String(req.headers.metadata));
    res.end(userData);
  });
  await new Promise<void>((r) => imds.listen(0, '127.0.0.1', r));
});
afterEach(async () => {
  await new Promise((r) => imds.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function watchOnce(): Promise<void> {
  const script = join(dir, 'watch.sh');
  await writeFile(script, WATCHER, { mode: 0o700 });
  await run('sh', [script], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      FLEET_IMDS_URL: `http://127.0.0.1:${(imds.address() as AddressInfo).port}/metadata`,
      FLEET_STATE_DIR: join(dir, 'state'),
      FLEET_ONCE: '1',
      MARK: join(dir, 'ran'),
    },
  });
}

const ran = () => readFile(join(dir, 'ran'), 'utf8').catch(() => '');
const script = (line: string) => Buffer.from(`#!/bin/sh\necho ${line} >> "$MARK"\n`).toString('base64');

describe('azure bootstrap', () => {
  it('runs each new userData script once, asking IMDS with the Metadata header', async () => {
    await watchOnce();
    expect(await ran()).toBe('');
    userData = script('boot-1');
    await watchOnce();
    await watchOnce();
    expect(await ran()).toBe('boot-1\n');
    userData = script('boot-2');
    await watchOnce();
    expect(await ran()).toBe('boot-1\nboot-2\n');
    expect(new Set(seen)).toEqual(new Set(['true']));
    expect((await stat(join(dir, 'state'))).mode & 0o777).toBe(0o700);
    expect(await readFile(join(dir, 'state', 'last-boot'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
  });

  it('is a shell script that parses, holding no token and no key', async () => {
    const text = azureBootstrap();
    const file = join(dir, 'bootstrap.sh');
    await writeFile(file, text);
    await run('sh', ['-n', file]);
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
    expect(text).not.toMatch(/FLEET_BOOT_TOKEN=|diskKey/);
    expect(text).toContain('systemctl enable --now dmzfleet-boot.service');
  });
});
