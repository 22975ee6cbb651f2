// A resize that grows, checked by the record in the transaction that
// records its intent: the twin of a create's budget check (budget.ts). Two
// authorities (replicas) racing grows for the last quota or capacity must
// get one approval and one refusal, never both: so the check runs under the
// stack's budget lock, over the live VMs and the grows approved and not yet
// reported (vm_reservations), and the approval is written in the same
// transaction as a reservation that creates and later grows count until the
// resize is reported (VmWriter.updateVm of the size clears it), fails
// (dropGrow) or expires (with the approval's credentials).
import { fail } from '../diags/index.ts';
import { fitGrow, lockBudget, readBudgetUsage } from './budget.ts';
import { VersionConflictError, whyNotAt } from './errors.ts';
import { insertHistory } from './history.ts';
import type { RecordSql } from './sql.ts';
import type { GrowStore } from './types.ts';

export function growStore({ db, description }: RecordSql): GrowStore {
  return {
    async reserveGrow(item) {
      const { vmId, row } = item;
      await db.transaction(async (q) => {
        await lockBudget(q, item.stack);
        // Reservations of resizes never reported: past their expiry they count no more.
        await q.query('DELETE FROM vm_reservations WHERE stack = $1 AND expires_at <= now()', [item.stack]);
        const found = await q.query<{ fleet: string; idx: number; data_center: string; cpu: number; memory_gib: number; version: number; owner: string | null }>(
          `SELECT v.fleet, v.idx, v.data_center, v.cpu, v.memory_gib, v.version, f.owner
           FROM vms v LEFT JOIN fleets f ON f.stack = v.stack AND f.fleet = v.fleet WHERE v.id = $1 AND v.stack = $2`,
          [vmId, item.stack],
        );
        const vm = found[0];
        if (!vm) fail('record.vm-not-found', `no VM with id ${vmId} of stack ${item.stack} in the record ${description}.`);
        if (Number(vm.version) !== item.expectedVersion) await whyNotAt(q, description, vmId, item.expectedVersion);
        const address = `${vm.fleet}/${vm.idx}`;
        // The limits were chosen for the owner the caller read; the fleet changed hands since: decide again.
        if ((vm.owner ?? '') !== item.owner) {
          throw new VersionConflictError(vmId, item.expectedVersion, Number(vm.version), `fleet ${vm.fleet} is owned by ${vm.owner ?? 'nobody'} now, not ${item.owner}.`, address);
        }
        const current = { cpu: Number(vm.cpu), memoryGiB: Number(vm.memory_gib) };
        const refused = fitGrow({ address, fleet: vm.fleet, owner: item.owner, dataCenter: vm.data_center, size: current }, item.size, item.budget, await readBudgetUsage(q, item.stack, vmId));
        if (refused) throw refused;
        await q.query(
          insertHistory([
            { vm: 'vms', from: 'vms WHERE vms.id = $1', fromState: '$2', toState: '$3', actor: '$4', planId: '$5', requestId: '$6', outcome: "'ok'", detail: '$7' },
          ]),
          [vmId, row.from, row.to, row.actor, row.planId ?? null, row.requestId ?? null, row.detail ?? null],
        );
        await q.query(
          `INSERT INTO vm_reservations (vm_id, stack, request_id, cpu, memory_gib, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
           ON CONFLICT (vm_id) DO UPDATE SET request_id = EXCLUDED.request_id, cpu = EXCLUDED.cpu, memory_gib = EXCLUDED.memory_gib, expires_at = EXCLUDED.expires_at`,
          [vmId, item.stack, row.requestId ?? '', item.size.cpu, item.size.memoryGiB, Math.max(1, Math.round(item.ttlMs))],
        );
      });
    },

    async dropGrow(vmId) {
      await db.query('DELETE FROM vm_reservations WHERE vm_id = $1', [vmId]);
    },
  };
}
