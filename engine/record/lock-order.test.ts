// The order a batch statement locks rows in: two authority replicas batch the
// reports of the same VMs in different orders (each replica its own batch), and
// PostgreSQL aborts one of two transactions that lock the same rows in opposite
// orders ("deadlock detected": the replica answered 500 internal; seen in
// test/replicas.e2e.test.ts, a report sent to both replicas at once). Each
// case holds a lock in another transaction (another replica), lets the write
// under test block on it, and checks that the write holds nothing the
// holder's next lock needs; the order every write keeps is listed in
// record.ts. Also: a boot token's use, raced by two checks, is recorded once.
// Runs when FLEET_TEST_POSTGRES_URL is set (PGlite is one connection).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootAttempts, testPostgresUrl, postgresBackend, type TestRecord } from './testing.ts';
import type { NewVm, VmRow } from './index.ts';

const pgUrl = testPostgresUrl();

/** A VM row inserted by hand (another replica's insert of the same VM, not committed yet); $1… as rawValues. */
const RAW_INSERT = `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1, 1, false) ON CONFLICT DO NOTHING`;
const rawValues = (vm: NewVm) => [vm.id, vm.stack, vm.fleet, vm.index, `${vm.stack}-${vm.fleet}-${vm.index}`, vm.dataCenter, vm.state, vm.desiredState, vm.specHash, vm.image];

describe.runIf(pgUrl !== undefined)("the lock order of the record's batch writes (PostgreSQL)", () => {
  let t: TestRecord;
  let holder: pg.Client;
  let watcher: pg.Client;
  beforeAll(async () => {
    t = await postgresBackend(pgUrl!).create();
    holder = new pg.Client({ connectionString: t.url });
    watcher = new pg.Client({ connectionString: t.url });
    await Promise.all([holder.connect(), watcher.connect()]);
  });
  afterAll(async () => {
    await holder?.end();
    await watcher?.end();
    await t?.cleanup();
  });

  const vmOf = (id: string, index: number, fleet = 'web', stack = 'lo'): NewVm => ({
    id,
    stack,
    fleet,
    owner: 'o',
    index,
    dataCenter: 'miami',
    state: 'S0',
    desiredState: 'Running',
    specHash: '0',
    image: 'ubuntu',
    size: { cpu: 1, memoryGiB: 1, diskGiB: 1 },
    encryptedDisk: false,
  });

  /** A batch's answers (each row's address, or an error's message), or the message it failed with: never a rejection left unheard. */
  const settled = (batch: Promise<readonly (VmRow | Error)[]>) =>
    batch.then(
      (out) => out.map((r) => (r instanceof Error ? r.message : r.address)),
      (err: Error) => err.message,
    );

  /**
   * Until a backend of the record other than the holder waits for a lock (the write under test is blocked); its
   * pid. Fails if `write` (the write's answer) comes first: it ran through without waiting.
   */
  async function blocked(write: Promise<unknown>): Promise<number> {
    let done: { answer: unknown } | undefined;
    void write.then(
      (answer) => (done = { answer }),
      (err: Error) => (done = { answer: err.message }),
    );
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    for (;;) {
      const { rows } = await watcher.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1 AND pid <> pg_backend_pid()",
        [holderPid],
      );
      if (rows.length > 0) return rows[0].pid;
      if (done) throw new Error(`the write ended without waiting for the holder's lock: ${JSON.stringify(done.answer)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('locks the VM rows in id order, whatever the order of its items: it holds none while it waits for the first', async () => {
    // Ten pairs: each batch names the VM whose id sorts last first (and that VM is inserted first).
    for (let pair = 0; pair < 10; pair++) {
      const p = randomUUID();
      const [first, last] = [`${p}-a`, `${p}-b`];
      await t.record.insertVm(vmOf(last, 2 * pair), { actor: 'test' });
      await t.record.insertVm(vmOf(first, 2 * pair + 1), { actor: 'test' });
      // Another transaction (another replica's batch) holds the VM whose id sorts first.
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM vms WHERE id = $1 FOR UPDATE', [first]);
      const batch = t.record.transitionVms([last, first].map((id) => ({ id, expectedVersion: 1, to: 'S1', ctx: { actor: 'test' } })));
      await blocked(batch);
      // The batch, blocked on `first`, holds no lock the holder's next one needs: locked in
      // item order it would hold `last`, and the two would wait for each other.
      const next = await holder.query('SELECT 1 FROM vms WHERE id = $1 FOR UPDATE NOWAIT', [last]).then(
        () => 'locked',
        (err: Error) => err.message,
      );
      await holder.query('ROLLBACK');
      expect(next, `pair ${pair}`).toBe('locked');
      expect((await batch).map((r) => (r instanceof Error ? r.message : r.state))).toEqual(['S1', 'S1']);
    }
  });

  it('inserts a batch of VMs in address order, whatever the order of its items: two replicas creating the same VMs do not deadlock', async () => {
    // The same creates sent to both replicas (each batching them in the order they came): an insert meeting a row
    // another transaction inserted and has not committed waits for it, so two batches inserting the same VMs in
    // opposite orders each waited for the other (PostgreSQL aborted one: deadlock detected).
    for (let pair = 0; pair < 5; pair++) {
      const p = randomUUID();
      const fleet = `ins-${p}`;
      // `first` sorts first by address (index 0); the batch names it last.
      const [first, last] = [vmOf(`${p}-z`, 0, fleet), vmOf(`${p}-a`, 1, fleet)];
      await holder.query('BEGIN');
      await holder.query(RAW_INSERT, rawValues(first));
      const batch = settled(t.record.insertVms([last, first].map((vm) => ({ vm, ctx: { actor: 'test' } }))));
      await blocked(batch);
      // Locked in item order the batch would hold `last`'s insert while it waits for `first`: the holder's insert of
      // `last` would then wait for the batch, and PostgreSQL would abort one of the two.
      const next = await holder.query(RAW_INSERT, rawValues(last)).then(
        () => 'inserted',
        (err: Error) => err.message,
      );
      await holder.query('ROLLBACK');
      expect(next, `pair ${pair}`).toBe('inserted');
      expect(await batch, `pair ${pair}`).toEqual(['1', '0'].map((i) => `${fleet}/${i}`));
    }
  });

  it("upserts a batch of creates' fleet rows in (stack, fleet) order, as transitionVms locks them", async () => {
    // A batch of creates bumps each of its fleets' rows (INSERT … ON CONFLICT DO UPDATE locks the row); it did so in
    // the order of its aggregate (hashed: any order), while another replica's batch (of creates, or of transitions,
    // which lock fleets in (stack, fleet) order) locked the same rows in order.
    // Fixed names (the aggregate's order is its hash's): on PostgreSQL 15 the batches of stacks fo1 and fo2 bumped
    // b before a (and the holder's next lock then found b held).
    for (let pair = 0; pair < 8; pair++) {
      const [stack, p] = [`fo${pair}`, randomUUID()];
      await t.record.insertVm(vmOf(`${p}-1`, 0, 'a', stack), { actor: 'test' });
      await t.record.insertVm(vmOf(`${p}-2`, 0, 'b', stack), { actor: 'test' });
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM fleets WHERE stack = $1 AND fleet = 'a' FOR UPDATE", [stack]);
      const batch = settled(t.record.insertVms([vmOf(`${p}-3`, 1, 'b', stack), vmOf(`${p}-4`, 1, 'a', stack)].map((vm) => ({ vm, ctx: { actor: 'test' } }))));
      await blocked(batch);
      const next = await holder.query("SELECT 1 FROM fleets WHERE stack = $1 AND fleet = 'b' FOR UPDATE NOWAIT", [stack]).then(
        () => 'locked',
        (err: Error) => err.message,
      );
      await holder.query('ROLLBACK');
      expect(next, `pair ${pair}`).toBe('locked');
      expect(await batch, `pair ${pair}`).toEqual(['b/1', 'a/1']);
    }
  });

  it('writes the approved attempt of a boot token once, however the clocks of two concurrent uses fall', async () => {
    // Two replicas check one token at once (a repeat window: the resumed agent's second ask is answered too). The
    // second waits for the first's use, then answers its check as a repeat. It told a use of its own from one it
    // found by `used_at = now()`; a use by another transaction stamped the same microsecond as this one's start
    // (two backends' clocks: nothing keeps them apart) passed for its own, and a second approved attempt was written.
    const a = await t.record.insertVm({ ...vmOf(randomUUID(), 0, 'boot'), realImage: 'ami-1' }, { actor: 'test' });
    const [on] = await t.record.transitionVms([{ id: a.id, expectedVersion: 1, to: 'PoweredOn', ctx: { actor: 'test' }, patch: { cloudId: 'i-1' }, bootTokenHash: 'h1' }]);
    expect(on).toMatchObject({ version: 2 });
    const check = { vmId: a.id, stack: 'lo', dataCenter: 'miami', cloudId: 'i-1', image: 'ami-1', tokenHash: 'h1', allowedStates: ['PoweredOn'], reason: 'matches', repeatWithinMs: 60_000 };
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM boot_tokens WHERE vm_id = $1 FOR UPDATE', [a.id]);
    const answer = t.record.authorizeBoots([check]).then(
      (out) => out.map((o) => o.approved),
      (err: Error) => err.message,
    );
    const pid = await blocked(answer);
    // The other replica's use (and its approved attempt), stamped at the waiting check's own now().
    const [{ start }] = (await watcher.query<{ start: string }>('SELECT xact_start::text AS start FROM pg_stat_activity WHERE pid = $1', [pid])).rows;
    await holder.query('UPDATE boot_tokens SET used_at = $2::timestamptz, used_version = 2 WHERE vm_id = $1', [a.id, start]);
    await holder.query("INSERT INTO boot_attempts (vm_id, data_center, cloud_id, image, approved, reason) VALUES ($1, 'miami', 'i-1', 'ami-1', true, 'the other replica')", [a.id]);
    await holder.query('COMMIT');
    expect(await answer).toEqual([true]);
    expect((await bootAttempts(t.record, { vmId: a.id })).map((x) => [x.approved, x.reason])).toEqual([[true, 'the other replica']]);
  });
});
