// A second process for the record's multi-process tests. Usage:
//   node --import tsx worker.ts MODE URL [ARGS…]
// It talks over stdout lines (READY, results) and waits for "go" on stdin
// where the test needs both workers to start together.
import { createInterface } from 'node:readline';
import { FleetError } from '../../diags/index.ts';
import { VersionConflictError } from '../errors.ts';
import { migrate } from '../migrations.ts';
import { openRecord } from '../open.ts';
import { openPglite } from '../pglite.ts';
import { openPostgres } from '../postgres.ts';
import type { SqlAdapter } from '../sql.ts';

const [mode, url, ...args] = process.argv.slice(2);
const say = (s: string) => process.stdout.write(`${s}\n`);

function waitGo(): Promise<void> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => {
      if (l.trim() === 'go') {
        rl.close();
        resolve();
      }
    });
  });
}

async function main(): Promise<void> {
  switch (mode) {
    // Starts a transaction that changes a VM and writes history, then hangs
    // until killed: the record must come back as it was before.
    case 'hang-in-transaction': {
      const [vmId] = args;
      const raw = url.startsWith('pglite://') ? await openPglite(url.slice('pglite://'.length)) : await openPostgres(url, url);
      await raw.transaction(async (q) => {
        await q.query(`UPDATE vms SET state = 'Hacked', version = version + 1 WHERE id = $1`, [vmId]);
        await q.query(
          `INSERT INTO history (vm_id, stack, fleet, address, to_state, actor, outcome) SELECT id, stack, fleet, 'x', 'Hacked', 'worker', 'ok' FROM vms WHERE id = $1`,
          [vmId],
        );
        await q.query(`INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
          SELECT 'ghost', stack, fleet, 999, 'ghost', 'x', 'x', 'x', 'x', 'x', 1, 1, 1, false FROM vms WHERE id = $1`, [vmId]);
        say('IN-TRANSACTION');
        await new Promise(() => {});
      });
      return;
    }
    // Tries the fleet lock once at "go"; holds it until stdin closes.
    case 'lock': {
      const [stack, fleet, leaseMs] = args;
      const record = await openRecord(url);
      say('READY');
      await waitGo();
      try {
        const h = await record.acquireLocks(stack, [fleet], { who: `w${process.pid}`, host: 'test', pid: process.pid, planId: null }, {
          leaseMs: Number(leaseMs),
        });
        say(`WON ${h.lockId}`);
      } catch (err) {
        if (err instanceof FleetError && err.diagnostics[0].code === 'record.lock-held') say('HELD');
        else throw err;
      }
      await new Promise<void>((resolve) => process.stdin.on('end', resolve).resume());
      await record.close();
      return;
    }
    // Increments a VM's spec hash N times, read-modify-write with retries on conflict.
    case 'increment': {
      const [vmId, times] = args;
      const record = await openRecord(url);
      say('READY');
      await waitGo();
      let conflicts = 0;
      for (let i = 0; i < Number(times); ) {
        const vm = await record.getVm(vmId);
        if (!vm) throw new Error('vm vanished');
        try {
          if (i % 2) await record.updateVm(vm.id, vm.version, { specHash: String(Number(vm.specHash) + 1) }, { actor: 'w' });
          else await record.transitionVm(vm.id, vm.version, `S${Number(vm.specHash) + 1}`, { actor: 'w' }, { specHash: String(Number(vm.specHash) + 1) });
          i++;
        } catch (err) {
          if (!(err instanceof VersionConflictError)) throw err;
          conflicts++;
        }
      }
      say(`DONE ${conflicts}`);
      await record.close();
      return;
    }
    // Commits a transition, then hangs until killed: the commit must survive.
    case 'commit-then-hang': {
      const [vmId] = args;
      const record = await openRecord(url);
      const vm = await record.getVm(vmId);
      if (!vm) throw new Error('vm missing');
      await record.transitionVm(vm.id, vm.version, 'Committed', { actor: 'worker' });
      say('COMMITTED');
      await new Promise(() => {});
      return;
    }
    // Upgrades the record to SCHEMA_VERSION, but stops at the K-th statement of the upgrade's transaction
    // (says `AT K`, then hangs until killed); says DONE when the upgrade has fewer statements.
    case 'migrate-hang': {
      const k = Number(args[0]);
      const db = url.startsWith('pglite://') ? await openPglite(url.slice('pglite://'.length)) : await openPostgres(url, url);
      const hanging: SqlAdapter = {
        kind: db.kind,
        query: (text, params) => db.query(text, params),
        close: () => db.close(),
        transaction: (fn) =>
          db.transaction((q) => {
            let n = 0;
            return fn({
              query: async (text, params) => {
                if (++n === k) {
                  say(`AT ${k}`);
                  await new Promise(() => {});
                }
                return q.query(text, params);
              },
            });
          }),
      };
      await migrate(hanging, { description: url });
      say('DONE');
      await db.close();
      return;
    }
    // Opens the record once and reports how it went.
    case 'open': {
      if (args[0] === '--wait') {
        say('READY');
        await waitGo();
      }
      try {
        const record = await openRecord(url);
        say('OPENED');
        await record.close();
      } catch (err) {
        if (!(err instanceof FleetError)) throw err;
        say(`ERR ${err.diagnostics[0].code} ${err.diagnostics[0].detail}`);
      }
      return;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(3);
});
