// `fleet refresh`: compare what each data center's cloud holds with the
// record. A difference that is one edge of the diagram is recorded as a
// transition (outcome `drift`, with its history row); anything else is only
// reported and noted in history, never written as if it were an edge.
import { FleetError } from '../diags/index.ts';
import type { ActualVm } from '../../protocol/index.ts';
import type { StackSession } from './session.ts';

export type DriftKind = 'recorded' | 'not-an-edge' | 'missing' | 'unknown' | 'unreachable';

export interface DriftEntry {
  kind: DriftKind;
  dataCenter: string;
  /** VM address for known VMs; the cloud id for unknown ones. */
  address: string;
  recordState: string | null;
  actualState: string | null;
  detail: string;
}

export interface RefreshResult {
  checked: number;
  drift: DriftEntry[];
}

export async function refreshStack(session: StackSession, opts: { actor: string; write?: boolean }): Promise<RefreshResult> {
  const { stack, pack, record } = session;
  const lc = pack.lifecycle;
  const write = opts.write ?? true;
  const vms = await record.listVms(stack.name);
  const drift: DriftEntry[] = [];
  let checked = 0;

  await Promise.all(
    stack.dataCenters.map(async (dc) => {
      const client = session.clients.get(dc.name);
      if (!client) return;
      let actual: ActualVm[];
      try {
        actual = await client.listVms();
      } catch (err) {
        const detail = err instanceof FleetError ? err.diagnostics[0].detail : String(err);
        drift.push({ kind: 'unreachable', dataCenter: dc.name, address: dc.name, recordState: null, actualState: null, detail });
        return;
      }
      const byId = new Map(actual.filter((a) => a.status === 'present').map((a) => [a.vmId, a]));
      for (const vm of vms.filter((v) => v.dataCenter === dc.name)) {
        checked++;
        const a = byId.get(vm.id);
        byId.delete(vm.id);
        if (!a) {
          // Before createVm has run there is nothing in the cloud to find.
          if (vm.cloudId === null || lc.isTerminal(vm.state)) continue;
          drift.push({ kind: 'missing', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: null, detail: `the record holds ${vm.address} (${vm.cloudId}) in ${vm.state}, but ${dc.name} has no such VM` });
          if (write) await record.addHistory(vm.id, { from: vm.state, to: vm.state, outcome: 'drift', actor: opts.actor, detail: `refresh: not found in ${dc.name}` });
          continue;
        }
        if (a.observedState === vm.state) continue;
        if (lc.allows(vm.state, a.observedState)) {
          drift.push({ kind: 'recorded', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: a.observedState, detail: `recorded ${vm.state} -> ${a.observedState}` });
          if (write) {
            await record.transitionVm(vm.id, vm.version, a.observedState, { actor: opts.actor, outcome: 'drift', detail: `refresh: ${dc.name} reports ${a.observedState}` });
          }
        } else {
          drift.push({
            kind: 'not-an-edge',
            dataCenter: dc.name,
            address: vm.address,
            recordState: vm.state,
            actualState: a.observedState,
            detail: `${dc.name} reports ${a.observedState} but the record holds ${vm.state}, and ${vm.state} -> ${a.observedState} is not an edge of the diagram; left as is`,
          });
          if (write) await record.addHistory(vm.id, { from: vm.state, to: vm.state, outcome: 'drift', actor: opts.actor, detail: `refresh: ${dc.name} reports ${a.observedState}, not an edge from ${vm.state}` });
        }
      }
      for (const a of byId.values()) {
        drift.push({ kind: 'unknown', dataCenter: dc.name, address: a.cloudId, recordState: null, actualState: a.observedState, detail: `${dc.name} runs ${a.name} (${a.cloudId}, VM id ${a.vmId}) that the record does not know` });
      }
    }),
  );
  drift.sort((a, b) => a.dataCenter.localeCompare(b.dataCenter) || a.address.localeCompare(b.address, 'en', { numeric: true }));
  return { checked, drift };
}
