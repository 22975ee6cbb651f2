// Which commands upgrade an older record, and `fleet record upgrade`.
//
// A pull request that tries a newer dmzfleet runs `fleet plan` with it on
// the record main's jobs share. Had the plan upgraded a PostgreSQL record,
// every job still on the older dmzfleet would stop on record.newer-schema,
// and the record would stay upgraded if the pull request were closed. So
// only commands that write upgrade a shared record; `fleet record upgrade`
// does it on purpose. A PGlite record (the stack's own folder) is still
// upgraded by `fleet plan`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../engine/record/migrations.ts';
import { openPglite } from '../engine/record/pglite.ts';
import { openPostgres } from '../engine/record/postgres.ts';
import type { SqlAdapter } from '../engine/record/sql.ts';
import { testBackends, type TestBackend } from '../engine/record/testing.ts';
import { runCli } from './helpers/cli.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** Version 12 (fleets.managed_by) is one the planner reads: a record at 11 cannot be read as it is. */
const OLDER = 11;

function raw(backend: TestBackend, url: string): Promise<SqlAdapter> {
  return backend.name === 'pglite' ? openPglite(url.slice('pglite://'.length)) : openPostgres(url, url);
}

async function versionOf(backend: TestBackend, url: string): Promise<number> {
  const db = await raw(backend, url);
  try {
    const rows = await db.query<{ schema_version: number }>('SELECT schema_version FROM meta');
    return Number(rows[0].schema_version);
  } finally {
    await db.close();
  }
}

/** A fresh record made by a dmzfleet that knew migrations up to `version` only. */
async function olderRecord(backend: TestBackend, version: number): Promise<{ url: string; drop(): Promise<void> }> {
  const fresh = await backend.freshUrl();
  const db = await raw(backend, fresh.url);
  try {
    await migrate(db, { description: fresh.url }, MIGRATIONS.filter((m) => m.version <= version));
  } finally {
    await db.close();
  }
  return fresh;
}

describe.each(testBackends())('an older record on $name', (backend) => {
  let stack: TempStack;
  beforeAll(async () => {
    stack = await tempStack({ name: 'upgrades' });
    await stack.spec('app', fleetYaml('app', { count: 1 }));
  });
  afterAll(async () => {
    await stack?.remove();
  });
  const fleet = (url: string, ...args: string[]) => runCli([...args, '--stack', stack.dir, '--record-url', url], { cwd: REPO });

  // The commands that write nothing: each refuses the record, names the way out, and leaves it at its version.
  const readers: { args: string[]; only?: TestBackend['name'] }[] = [
    { args: ['plan'], only: 'postgres' },
    { args: ['state', 'list'] },
    { args: ['history'] },
    { args: ['refresh', '--check'] },
  ];

  it('the commands that write nothing refuse it untouched (record.older-schema); `fleet record upgrade` upgrades it once', async () => {
    const { url, drop } = await olderRecord(backend, OLDER);
    try {
      for (const r of readers.filter((x) => x.only === undefined || x.only === backend.name)) {
        const run = await fleet(url, ...r.args);
        expect(run.code, `${r.args.join(' ')}: ${run.stderr}`).toBe(1);
        expect(run.stderr).toContain('record.older-schema');
        expect(run.stderr).toContain(`schema version ${OLDER}`);
        expect(run.stderr).toContain('fleet record upgrade');
        expect(await versionOf(backend, url), r.args.join(' ')).toBe(OLDER);
      }
      const up = await fleet(url, 'record', 'upgrade', '--format', 'json');
      expect(up.code, up.stderr).toBe(0);
      const doc = JSON.parse(up.stdout) as Record<string, unknown>;
      expect(schemaErrors('record-upgrade-output', doc)).toEqual([]);
      expect(doc).toMatchObject({ from: OLDER, to: SCHEMA_VERSION, upgraded: true, diagnostics: [] });
      expect(String(doc.record)).not.toContain('password');
      expect(await versionOf(backend, url)).toBe(SCHEMA_VERSION);
      // Now every command reads it; a second upgrade has nothing to do.
      const plan = await fleet(url, 'plan');
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stdout).toContain('1 to create');
      const again = await fleet(url, 'record', 'upgrade');
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(`is at schema version ${SCHEMA_VERSION}, this dmzfleet's: nothing to upgrade`);
    } finally {
      await drop();
    }
    // A `fleet` process per command (six on PGlite), each opening the record, a few seconds each on a loaded machine:
    // 11 s at load 7-11 but 37.5 s at load 15-18, near the suite's 60 s (record.contract.test.ts's like case got 180 s).
  }, 180_000);

  it.runIf(backend.name === 'pglite')('`fleet plan` still upgrades a PGlite record (the stack\'s own folder, no one else\'s jobs read it)', async () => {
    const { url, drop } = await olderRecord(backend, OLDER);
    try {
      const plan = await fleet(url, 'plan');
      expect(plan.code, plan.stderr).toBe(0);
      expect(await versionOf(backend, url)).toBe(SCHEMA_VERSION);
      // And says so: older dmzfleets now refuse the record (it said nothing).
      expect(plan.stderr).toContain('record.upgraded');
      expect(plan.stderr).toContain(`from schema version ${OLDER} to ${SCHEMA_VERSION}`);
      const again = await fleet(url, 'plan');
      expect(again.stderr).not.toContain('record.upgraded');
    } finally {
      await drop();
    }
  });

  it('`fleet apply` upgrades it and says so (record.upgraded), in text and in its JSON diagnostics', async () => {
    const { url, drop } = await olderRecord(backend, OLDER);
    try {
      const apply = await fleet(url, 'apply', '--yes', '--format', 'json');
      expect(apply.code, apply.stderr + apply.stdout).toBe(0);
      expect(await versionOf(backend, url)).toBe(SCHEMA_VERSION);
      expect(apply.stdout).toContain('record.upgraded');
      expect(apply.stdout).toContain(`from schema version ${OLDER} to ${SCHEMA_VERSION}`);
      const again = await fleet(url, 'apply', '--yes');
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).not.toContain('record.upgraded');
    } finally {
      await drop();
    }
  }, 180_000);

  it.runIf(backend.name === 'postgres')('the dashboard does not upgrade it either', async () => {
    const { url, drop } = await olderRecord(backend, OLDER);
    try {
      const ui = await fleet(url, 'ui', '--port', '0');
      expect(ui.code, ui.stderr).toBe(1);
      expect(ui.stderr).toContain('record.older-schema');
      expect(await versionOf(backend, url)).toBe(OLDER);
    } finally {
      await drop();
    }
  });

  it('`fleet record upgrade` makes no record where there is none', async () => {
    const { url, drop } = await backend.freshUrl();
    try {
      const up = await fleet(url, 'record', 'upgrade');
      expect(up.code).toBe(1);
      expect(up.stderr).toContain('record.not-found');
    } finally {
      await drop();
    }
  });

  it('a record newer than this dmzfleet is refused by `fleet record upgrade`, untouched', async () => {
    const { url, drop } = await backend.freshUrl();
    try {
      const db = await raw(backend, url);
      await migrate(db, { description: url }, [...MIGRATIONS, { version: SCHEMA_VERSION + 1, description: 'future', statements: ['CREATE TABLE future_thing (x int)'] }]);
      await db.close();
      const up = await fleet(url, 'record', 'upgrade');
      expect(up.code).toBe(1);
      expect(up.stderr).toContain('record.newer-schema');
      expect(await versionOf(backend, url)).toBe(SCHEMA_VERSION + 1);
    } finally {
      await drop();
    }
  });
});
