// The authority's secret file (and the dashboard's ui.token, made the same
// way) is private whatever was there before: found by QA, an empty file left
// by a provisioning tool or `touch` got the secret written into it at its
// old mode (0644: every local user could derive every VM's disk key), and a
// secret file copied in world-readable stayed so.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateSecret } from './keys.ts';

const modeOf = async (p: string) => (await stat(p)).mode & 0o777;

describe('loadOrCreateSecret', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-secret-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('makes a fresh secret in a 0600 file of a 0700 folder, and reads the same one again', async () => {
    const file = join(dir, 'fresh', 'authority.secret');
    const secret = loadOrCreateSecret(file);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect([await modeOf(file), await modeOf(join(dir, 'fresh'))]).toEqual([0o600, 0o700]);
    expect(loadOrCreateSecret(file)).toBe(secret);
  });

  it.each([
    ['an empty file', ''],
    ['a file of blanks', '  \n'],
  ])('writes into %s left world-readable only once it is 0600', async (name, text) => {
    const file = join(dir, `${name.replace(/ /g, '-')}.secret`);
    await writeFile(file, text);
    await chmod(file, 0o644);
    const secret = loadOrCreateSecret(file);
    expect(await modeOf(file)).toBe(0o600);
    expect((await readFile(file, 'utf8')).trim()).toBe(secret);
  });

  it.each([
    ['0644', 0o644],
    ['0640', 0o640],
    ['0604', 0o604],
  ])('makes a secret file of mode %s 0600 and keeps its secret', async (_name, mode) => {
    const file = join(dir, `loose-${mode.toString(8)}.secret`);
    await writeFile(file, 'kept-secret\n');
    await chmod(file, mode);
    expect(loadOrCreateSecret(file)).toBe('kept-secret');
    expect(await modeOf(file)).toBe(0o600);
  });
});
