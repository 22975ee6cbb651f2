// A PostgreSQL server whose databases default to a stricter isolation (a DBA's default_transaction_isolation of
// repeatable read or serializable): the record's statements are written for read committed (a row lock waited on
// reads the row as its holder left it), so every connection it opens runs read committed whatever the default.
// Before, concurrent writes of one fleet failed with "could not serialize access" (40001), a raw record error.
import { describe, expect, it } from 'vitest';
import { openRecord, type NewVm } from './index.ts';
import { createTestDatabase, testPostgresUrl, usageDrift } from './testing.ts';

const pgUrl = testPostgresUrl();

const vmOf = (index: number): NewVm => ({
  stack: 'iso',
  fleet: 'web',
  owner: 'o',
  index,
  dataCenter: 'miami',
  state: 'Requested',
  desiredState: 'Running',
  specHash: 'h',
  image: 'ubuntu',
  size: { cpu: 1, memoryGiB: 1, diskGiB: 1 },
  encryptedDisk: false,
});

describe.runIf(pgUrl !== undefined).each(['repeatable read', 'serializable'])('a database defaulting to %s isolation', (isolation) => {
  it('takes 40 concurrent VM writes of one fleet, each once, usage sums in step', async () => {
    const db = await createTestDatabase(pgUrl!);
    try {
      const setup = await openRecord(db.url);
      await setup.close();
      const { Client } = (await import('pg')).default;
      const admin = new Client({ connectionString: db.url });
      await admin.connect();
      try {
        await admin.query(`ALTER DATABASE "${new URL(db.url).pathname.slice(1)}" SET default_transaction_isolation = '${isolation}'`);
      } finally {
        await admin.end();
      }
      const record = await openRecord(db.url);
      try {
        expect(await record.sql.query('SHOW transaction_isolation')).toEqual([{ transaction_isolation: 'read committed' }]);
        const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => record.insertVm(vmOf(i), { actor: 'test' })));
        const moved = await Promise.all(rows.map((r) => record.transitionVm(r.id, r.version, 'BeingCreated', { actor: 'test' })));
        expect(moved.map((r) => r.state)).toEqual(Array(40).fill('BeingCreated'));
        expect(await record.listVms('iso')).toHaveLength(40);
        expect(await usageDrift(record)).toEqual([]);
      } finally {
        await record.close();
      }
    } finally {
      await db.drop();
    }
  }, 60_000);
});
