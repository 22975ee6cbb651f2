// Outside faults: bad URLs, unreachable servers, foreign or damaged PGlite
// folders, and a process killed in the middle of a transaction.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { describeRecordUrl, openRecord } from './open.ts';
import { testBackends } from './testing.ts';
import { startWorker } from './testdata/spawn.ts';

async function diagOf(url: string) {
  const err = await openRecord(url).then(
    async (r) => {
      await r.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FleetError);
  return (err as FleetError).diagnostics[0];
}

describe('record URLs', () => {
  it.each([
    ['mysql://root@db/fleet', 'record.bad-url'],
    ['pglite://relative/dir', 'record.bad-url'],
    ['', 'record.bad-url'],
    ['mysql://root:s3cret@db/fleet', 'record.bad-url'],
    ['postgres://fleet:s3cret@db.example:notaport/fleet', 'record.bad-url'],
  ])('%s -> %s', async (url, code) => {
    const d = await diagOf(url);
    expect(d.code).toBe(code);
    expect(d.detail).not.toContain('s3cret');
  });

  it.each([
    ['postgres://fleet:s3cret@db.example:5432/fleet', 'postgres://fleet:***@db.example:5432/fleet'],
    ['postgres://fleet@db.example/fleet', 'postgres://fleet@db.example/fleet'],
    ['pglite:///var/lib/fleet', 'pglite:///var/lib/fleet'],
    // node-postgres takes the password (and the client key's passphrase) from the query too.
    ['postgres://fleet@db.example:5432/fleet?password=s3cret', 'postgres://fleet@db.example:5432/fleet?password=***'],
    ['postgres://fleet@db.example/fleet?sslmode=require&sslpassword=s3cret&application_name=x', 'postgres://fleet@db.example/fleet?sslmode=require&sslpassword=***&application_name=x'],
    ['postgresql://fleet:a@db.example/fleet?password=b', 'postgresql://fleet:***@db.example/fleet?password=***'],
    ['postgres://fleet:s3cret@db.example:notaport/fleet', 'postgres://fleet:***@db.example:notaport/fleet'],
    ['mysql://root:s3cret@db/fleet', 'mysql://root:***@db/fleet'],
  ])('describes %s without its password', (url, want) => {
    expect(describeRecordUrl(url)).toBe(want);
  });
});

describe('unreachable PostgreSQL', () => {
  it('names host, port and cause, without a stack trace', async () => {
    const d = await diagOf('postgres://postgres:pw@127.0.0.1:1/fleet');
    expect(d.code).toBe('record.unreachable');
    expect(d.detail).toContain('127.0.0.1:1');
    expect(d.detail).toContain('ECONNREFUSED');
    expect(d.detail).not.toContain('pw@');
    expect(d.detail).not.toMatch(/\n\s+at /);
  });
});

describe('PostgreSQL servers that misbehave', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  async function listen(onConnection: (s: Socket) => void): Promise<number> {
    const server = createServer(onConnection);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  }

  it('a server that hangs up is record.unreachable', async () => {
    const port = await listen((s) => s.destroy());
    const d = await diagOf(`postgres://postgres@127.0.0.1:${port}/fleet`);
    expect(d.code).toBe('record.unreachable');
    expect(d.detail).toContain(`127.0.0.1:${port}`);
  });

  it('a server that never answers times out as record.unreachable', async () => {
    const sockets: Socket[] = [];
    const port = await listen((s) => sockets.push(s));
    const before = process.env.FLEET_RECORD_CONNECT_TIMEOUT_MS;
    process.env.FLEET_RECORD_CONNECT_TIMEOUT_MS = '300';
    try {
      const d = await diagOf(`postgres://postgres@127.0.0.1:${port}/fleet`);
      expect(d.code).toBe('record.unreachable');
      expect(d.detail).toMatch(/timeout/i);
    } finally {
      if (before === undefined) delete process.env.FLEET_RECORD_CONNECT_TIMEOUT_MS;
      else process.env.FLEET_RECORD_CONNECT_TIMEOUT_MS = before;
      for (const s of sockets) s.destroy();
    }
  });
});

describe('PGlite directory faults', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-record-faults-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses a folder of foreign files, naming the path', async () => {
    const dir = join(root, 'junk');
    await mkdir(dir);
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await writeFile(join(dir, 'data.bin'), Buffer.from([1, 2, 3]));
    const d = await diagOf(`pglite://${dir}`);
    expect(d).toMatchObject({ code: 'record.corrupt', file: dir });
    expect(d.detail).toContain('notes.txt');
  });

  it('refuses a PostgreSQL directory of another version', async () => {
    const dir = join(root, 'pg15');
    await mkdir(join(dir, 'base'), { recursive: true });
    await writeFile(join(dir, 'PG_VERSION'), '15\n');
    await writeFile(join(dir, 'base', 'junk'), 'x');
    const d = await diagOf(`pglite://${dir}`);
    expect(d).toMatchObject({ code: 'record.corrupt', file: dir });
  });

  it('says a read-only record directory is unwritable (not damaged), naming the read-only entry and what to do', async () => {
    const dir = join(root, 'readonly');
    await (await openRecord(`pglite://${dir}`)).close();
    const entries = [dir, ...(await readdir(dir, { recursive: true })).map((e) => join(dir, e))];
    // Every mode bit of writing off, as a record copied from read-only media or chmod a-w keeps it.
    for (const e of entries.reverse()) await chmod(e, (await stat(e)).mode & 0o555);
    try {
      const d = await diagOf(`pglite://${dir}`);
      // It was record.corrupt, "restore it from a backup", with PGlite's "failed to initialize properly".
      expect(d).toMatchObject({ code: 'record.unwritable', file: dir });
      expect(d.detail).toContain('the folder is read-only (mode 0500)');
      expect(d.detail).toContain(`chmod -R u+rwX ${dir}`);
      expect(d.detail).toContain('the record is not damaged');
    } finally {
      for (const e of entries.reverse()) await chmod(e, (await stat(e)).mode | 0o200);
    }
    // Writable again, it opens as it was.
    await (await openRecord(`pglite://${dir}`)).close();
  });

  // A record folder of mode 0000 said "PGlite writes its record even to read it ([object Object])" (PGlite threw no
  // Error) and told to run `chmod -R u+w`, which cannot recurse into a folder it may not read. As a user other than
  // root it never got there: checkDataDir's readdir threw EACCES, an internal error.
  it('says a record folder of mode 0000 is unwritable, with a cause that reads and a chmod that works', async () => {
    const dir = join(root, 'closed');
    await (await openRecord(`pglite://${dir}`)).close();
    await chmod(dir, 0o000);
    try {
      const d = await diagOf(`pglite://${dir}`);
      expect(d).toMatchObject({ code: 'record.unwritable', file: dir });
      expect(d.detail).toContain('the folder is read-only (mode 0000)');
      expect(d.detail).not.toContain('[object Object]');
      expect(d.detail).toContain(`chmod -R u+rwX ${dir}`);
    } finally {
      await chmod(dir, 0o700);
    }
  });

  it('refuses a file where the directory should be', async () => {
    const file = join(root, 'afile');
    await writeFile(file, 'x');
    expect(await diagOf(`pglite://${file}`)).toMatchObject({ code: 'record.corrupt', file });
  });
});

describe.each(testBackends())('a process killed mid-transaction on $name', (backend) => {
  it('leaves the record as it was, and keeps what was committed', async () => {
    const { url, drop } = await backend.freshUrl();
    try {
      const r = await openRecord(url);
      const vm = await r.insertVm(
        {
          stack: 'kill',
          fleet: 'web',
          owner: 'o',
          index: 0,
          dataCenter: 'miami',
          state: 'Requested',
          desiredState: 'Running',
          specHash: 'h',
          image: 'ubuntu',
          size: { cpu: 1, memoryGiB: 1, diskGiB: 1 },
          encryptedDisk: false,
        },
        { actor: 'test' },
      );
      // PGlite is single-process: let the worker have the directory alone.
      if (backend.name === 'pglite') await r.close();
      const w = startWorker(['hang-in-transaction', url, vm.id]);
      await w.line(/^IN-TRANSACTION$/);
      w.child.kill('SIGKILL');
      await w.exited;
      const again = backend.name === 'pglite' ? await openRecord(url) : r;
      expect(await again.getVm(vm.id)).toMatchObject({ state: 'Requested', version: 1 });
      expect(await again.getVm('ghost')).toBeUndefined();
      expect(await again.history('kill')).toHaveLength(1);
      // And the record is writable afterwards.
      await again.transitionVm(vm.id, 1, 'BeingCreated', { actor: 'test' });
      if (backend.name === 'pglite') await again.close();

      // A committed change survives the process being killed right after.
      const w2 = startWorker(['commit-then-hang', url, vm.id]);
      await w2.line(/^COMMITTED$/);
      w2.child.kill('SIGKILL');
      await w2.exited;
      const third = backend.name === 'pglite' ? await openRecord(url) : again;
      expect(await third.getVm(vm.id)).toMatchObject({ state: 'Committed', version: 3 });
      expect(await third.history('kill')).toHaveLength(3);
      await third.close();
    } finally {
      await drop();
    }
  });
});

describe('one process per PGlite record', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-record-busy-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses a second opener, in this process and in another, naming the holder', async () => {
    const dir = join(root, 'record');
    const r = await openRecord(`pglite://${dir}`);
    try {
      expect(existsSync(`${dir}.lock`)).toBe(true);
      const same = await diagOf(`pglite://${dir}`);
      expect(same).toMatchObject({ code: 'record.busy', file: dir });
      const w = startWorker(['open', `pglite://${dir}`], { FLEET_RECORD_BUSY_TIMEOUT_MS: '0' });
      const line = await w.line(/^(OPENED|ERR)/);
      expect(line).toContain('ERR record.busy');
      expect(line).toContain(`pid ${process.pid} on ${hostname()}`);
      await w.exited;
    } finally {
      await r.close();
    }
    expect(existsSync(`${dir}.lock`)).toBe(false);
    const again = await openRecord(`pglite://${dir}`);
    await again.close();
  });

  it('takes over the lock of a process that is gone', async () => {
    const dir = join(root, 'stale');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(`${dir}.lock`, JSON.stringify({ pid: Number(gone.stdout), host: hostname(), since: 'then', command: 'fleet apply' }));
    const r = await openRecord(`pglite://${dir}`);
    await r.close();
  });
});
