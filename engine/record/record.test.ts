import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseVmAddress } from '../model/index.ts';
import { lockHeldDetail, lockHolder } from './locks.ts';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.ts';
import { pgTimeToIso } from './rows.ts';

describe('pgTimeToIso', () => {
  it.each([
    ['2026-01-02 03:04:05.678901', '2026-01-02T03:04:05.678Z'],
    ['2026-01-02T03:04:05.678901', '2026-01-02T03:04:05.678Z'],
    ['2026-01-02 03:04:05.6', '2026-01-02T03:04:05.600Z'],
    ['2026-01-02T03:04:05.12', '2026-01-02T03:04:05.120Z'],
    ['2026-01-02 03:04:05', '2026-01-02T03:04:05.000Z'],
    ['2026-01-02T03:04:05.6+00:00', '2026-01-02T03:04:05.600Z'],
    ['2026-01-02 03:04:05+00', '2026-01-02T03:04:05.000Z'],
  ])('%s -> %s', (input, want) => {
    expect(pgTimeToIso(input)).toBe(want);
  });
});

describe('parseVmAddress', () => {
  it.each([
    ['web/0', { fleet: 'web', index: 0 }],
    ['web/12', { fleet: 'web', index: 12 }],
    ['a/b/3', { fleet: 'a/b', index: 3 }],
    ['web', undefined],
    ['/3', undefined],
    ['web/', undefined],
    ['web/01', undefined],
    ['web/-1', undefined],
    ['web/1.5', undefined],
  ])('%s', (input, want) => {
    expect(parseVmAddress(input)).toEqual(want);
  });
});

describe('lockHolder', () => {
  it.each([
    ['alice', 'laptop', 'alice@laptop pid 7'],
    // fleet apply's actor is user@host already: not root@ci-7@ci-7.
    ['root@ci-7', 'ci-7', 'root@ci-7 pid 7'],
    ['root@ci-7', 'ci-8', 'root@ci-7@ci-8 pid 7'],
  ])('%s on %s -> %s', (who, host, want) => {
    expect(lockHolder({ who, host, pid: 7 })).toBe(want);
  });
});

describe('lockHeldDetail', () => {
  it('names holder, plan, since, lock id and the unlock command', () => {
    expect(
      lockHeldDetail({
        lockId: 'ab12cd34',
        stack: 'local',
        fleet: 'web',
        who: 'alice',
        host: 'laptop',
        pid: 77,
        planId: 'p-9',
        since: '2026-01-01T00:00:00.000Z',
        expiresAt: '2026-01-01T00:00:30.000Z',
        fencingToken: 3,
      }),
    ).toBe(
      'fleet web of stack local is locked by alice@laptop pid 77 for plan p-9 since 2026-01-01T00:00:00.000Z ' +
        '(lock id ab12cd34, lease until 2026-01-01T00:00:30.000Z). Wait for that apply to finish or its lease to expire; ' +
        'if it is gone, run `fleet unlock ab12cd34`.',
    );
  });

  // A killed apply's lock (its pid gone from this host) is what `fleet state rm` and `fleet import` meet after a crash:
  // "Wait for that apply to finish" sent the user waiting for a process that no longer runs.
  it.each([
    { name: 'a process of this host that is gone', host: () => hostname(), pid: () => spawnSync(process.execPath, ['-e', '']).pid!, gone: true },
    { name: 'a process of this host that runs', host: () => hostname(), pid: () => process.ppid, gone: false },
    { name: 'a process of another host', host: () => 'runner-elsewhere', pid: () => 4242, gone: false },
  ])('held by $name: says gone=$gone', ({ host, pid, gone }) => {
    const l = { lockId: 'ab12cd34', stack: 'local', fleet: 'web', who: 'ci', host: host(), pid: pid(), planId: 'p-9', since: 't0', expiresAt: 't1', fencingToken: 3 };
    const detail = lockHeldDetail(l);
    expect(detail.includes('That process no longer runs on this host (an apply killed or lost): `fleet unlock ab12cd34` releases the lock')).toBe(gone);
    expect(detail.includes('Wait for that apply to finish')).toBe(!gone);
  });

  it("names fleet apply's holder (who is user@host) without its host twice", () => {
    const l = { lockId: 'ab12cd34', stack: 'local', fleet: 'web', who: 'root@ci-7', host: 'ci-7', pid: 77, planId: null, since: 't0', expiresAt: 't1', fencingToken: 3 };
    expect(lockHeldDetail(l)).toContain('is locked by root@ci-7 pid 77 since t0');
  });
});

describe('a PGlite record on disk is private', () => {
  it('creates its folders 0700, and makes an older 0755 record folder 0700 on open', async () => {
    const { mkdtemp, mkdir, rm, stat } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openRecord } = await import('./open.ts');
    const root = await mkdtemp(join(tmpdir(), 'fleet-private-'));
    try {
      const fresh = join(root, '.fleet', 'record');
      const a = await openRecord(`pglite://${fresh}`);
      await a.close();
      for (const d of [join(root, '.fleet'), fresh]) expect({ d, mode: (await stat(d)).mode & 0o777 }).toEqual({ d, mode: 0o700 });

      const older = join(root, 'older');
      await mkdir(older, { mode: 0o755 });
      const b = await openRecord(`pglite://${older}`);
      await b.close();
      expect((await stat(older)).mode & 0o777).toBe(0o700);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('keeps every file of its data directory 0600 and every folder 0700, and makes an older world-readable one so on open', async () => {
    const { chmod, mkdtemp, readdir, rm, stat } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openRecord } = await import('./open.ts');
    /** Entries of `dir` that are not 0700 (folders) / 0600 (files). */
    const open = async (dir: string): Promise<string[]> => {
      const out: string[] = [];
      for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
        const p = join(e.parentPath, e.name);
        const mode = (await stat(p)).mode & 0o777;
        if (mode !== (e.isDirectory() ? 0o700 : 0o600)) out.push(`${mode.toString(8)} ${p}`);
      }
      return out;
    };
    const root = await mkdtemp(join(tmpdir(), 'fleet-private-'));
    try {
      const dir = join(root, 'record');
      const a = await openRecord(`pglite://${dir}`);
      await a.stackIdentity('local', { create: true });
      await a.close();
      expect(await open(dir)).toEqual([]);
      // A record written before this rule: its template files as PGlite wrote them.
      const files = (await readdir(dir, { withFileTypes: true, recursive: true })).filter((e) => e.isFile()).slice(0, 50);
      for (const f of files) await chmod(join(f.parentPath, f.name), 0o666);
      await chmod(join(dir, 'base'), 0o755);
      expect((await open(dir)).length).toBe(files.length + 1);
      const b = await openRecord(`pglite://${dir}`);
      await b.close();
      expect(await open(dir)).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

// docs/record.md said "schema version 12" for a release at 13, and no test noticed.
describe('docs/record.md and the migrations', () => {
  const doc = readFileSync(new URL('../../docs/record.md', import.meta.url), 'utf8');
  it('names the schema version its tables are of', () => {
    expect(doc).toContain(`## Tables (schema version ${SCHEMA_VERSION})`);
  });
  it('lists every indexOnly migration where it says which commands read an older record as it is', () => {
    const indexOnly = MIGRATIONS.filter((m) => m.indexOnly === true).map((m) => m.version);
    const words = indexOnly.length === 1 ? String(indexOnly[0]) : `${indexOnly.slice(0, -1).join(', ')} and ${indexOnly[indexOnly.length - 1]}`;
    expect(doc).toContain(`migrations marked \`indexOnly\` (${words}:`);
  });
});
