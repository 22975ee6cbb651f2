// A record whose storage refuses writes (a full disk, a read-only folder) is
// record.unwritable with its cause, never record.corrupt or a raw pg error.
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { connectionFault } from './postgres.ts';
import { dirFault, lockFileFault, readOnlyEntry, writeFault } from './storage.ts';

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('storage faults of a record', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-record-storage-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a lock file the disk has no room for, or a read-only file system refuses, is record.unwritable saying which; any other error is left to the caller', () => {
    const full = lockFileFault('/r/rec', '/r/rec.lock', errno('ENOSPC', 'ENOSPC: no space left on device, write'));
    expect(full?.diagnostics[0]).toMatchObject({ code: 'record.unwritable', file: '/r/rec' });
    expect(full?.diagnostics[0].detail).toContain('the disk holding it is full (ENOSPC: no space left on device, write). Free space on that disk');
    const ro = lockFileFault('/r/rec', '/r/rec.lock', errno('EROFS', 'EROFS: read-only file system'));
    expect(ro?.diagnostics[0].detail).toContain('its file system is mounted read-only');
    expect(ro?.diagnostics[0].detail).toContain('Give this user read and write access');
    expect(lockFileFault('/r/rec', '/r/rec.lock', errno('ENOENT', 'no such file'))).toBeUndefined();
  });

  // `fleet plan` as a user who may not write the stack folder said "record.corrupt: Record directory unreadable,
  // cannot create the record directory …: EACCES", and a record folder it may not read was an internal error.
  it('a record folder that cannot be created or listed for want of rights or room is record.unwritable; any other error is left to the caller', () => {
    const denied = dirFault('/r/rec', 'create', errno('EACCES', "EACCES: permission denied, mkdir '/r/rec'"));
    expect(denied?.diagnostics[0]).toMatchObject({ code: 'record.unwritable', file: '/r/rec' });
    expect(denied?.diagnostics[0].detail).toBe(
      "cannot create the record directory /r/rec: this user may not write there (EACCES: permission denied, mkdir '/r/rec'). Give this user read and write access (`chmod -R u+rwX /r/rec`, and to the folder holding it), or run as its owner, then run the command again; the record is not damaged by this (do not restore it from a backup for it).",
    );
    expect(dirFault('/r/rec', 'read', errno('EACCES', "EACCES: permission denied, scandir '/r/rec'"))?.diagnostics[0].detail).toContain('cannot read the record directory /r/rec: this user may not read it (EACCES');
    expect(dirFault('/r/rec', 'create', errno('ENOSPC', 'ENOSPC'))?.diagnostics[0].detail).toContain('the disk holding it is full');
    expect(dirFault('/r/rec', 'create', errno('ENOTDIR', 'not a directory'))).toBeUndefined();
  });

  it('a statement that found the disk full (SQLSTATE 53100) is record.unwritable; other errors pass unchanged', () => {
    const pg = Object.assign(new Error('could not extend file "base/5/16509": No space left on device'), { code: '53100' });
    const f = writeFault(pg, 'pglite:///r/rec');
    expect(f).toBeInstanceOf(FleetError);
    expect((f as FleetError).diagnostics[0]).toMatchObject({ code: 'record.unwritable' });
    expect((f as FleetError).diagnostics[0].detail).toContain('the record pglite:///r/rec could not be written: the disk holding it is full (could not extend file');
    const unique = Object.assign(new Error('duplicate key'), { code: '23505' });
    expect(writeFault(unique, 'x')).toBe(unique);
    expect(writeFault('text', 'x')).toBe('text');
  });

  it('a PostgreSQL record out of disk space says so too (it reached the CLI as the raw pg error)', () => {
    const pg = Object.assign(new Error('could not extend file "base/16384/2619": No space left on device'), { code: '53100' });
    const f = connectionFault(pg, { host: 'db', port: '5432', description: 'postgres://fleet@db:5432/fleet' });
    expect((f as FleetError).diagnostics[0]).toMatchObject({ code: 'record.unwritable' });
    expect((f as FleetError).diagnostics[0].detail).toContain('the record postgres://fleet@db:5432/fleet could not be written: the disk holding it is full');
  });

  // `database does not exist (3D000): database "fleet" does not exist.` said
  // what and why, but not what to do; nor did a refused connection.
  it.each([
    { cause: 'a missing database', err: Object.assign(new Error('database "fleet" does not exist'), { code: '3D000' }), todo: 'Create the database (createdb -h db -p 5432 fleet), or correct the URL\'s database name.' },
    { cause: 'a wrong password', err: Object.assign(new Error('password authentication failed for user "fleet"'), { code: '28P01' }), todo: 'Check the user and password in the URL (or PGPASSWORD, ~/.pgpass).' },
    { cause: 'a refused authentication', err: Object.assign(new Error('no pg_hba.conf entry'), { code: '28000' }), todo: 'Check the user in the URL, and that the server\'s pg_hba.conf lets it connect from this host.' },
    { cause: 'a refused connection', err: errno('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:5432'), todo: 'Check that PostgreSQL runs and listens on db:5432, and the URL\'s host and port.' },
    { cause: 'an unknown host', err: errno('ENOTFOUND', 'getaddrinfo ENOTFOUND db'), todo: 'Check the URL\'s host name (db).' },
  ])('$cause says what to do', ({ err, todo }) => {
    const f = connectionFault(err, { host: 'db', port: '5432', description: 'postgres://fleet@db:5432/fleet' });
    expect((f as FleetError).diagnostics[0]).toMatchObject({ code: 'record.unreachable' });
    expect((f as FleetError).diagnostics[0].detail).toMatch(new RegExp(`^cannot use the PostgreSQL record at db:5432 \\(postgres://fleet@db:5432/fleet\\): .+\\. ${todo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  });

  it('finds the first entry its owner may not write, or none', async () => {
    const dir = join(root, 'rec');
    await mkdir(join(dir, 'base'), { recursive: true });
    await writeFile(join(dir, 'base', 'f'), 'x');
    expect(readOnlyEntry(dir)).toBeUndefined();
    await chmod(join(dir, 'base', 'f'), 0o400);
    expect(readOnlyEntry(dir)).toEqual({ path: join(dir, 'base', 'f'), mode: '0400' });
    await chmod(join(dir, 'base', 'f'), 0o600);
  });
});
