// How an Azure VM's provisioningState and PowerState map onto the default
// pack's diagram (refresh compares observedState with the record). One
// table, documented in docs/drivers/azure.md: if you change a row, change it
// there too.
//
// | provisioningState     | PowerState (instance view)  | agent report (this client) | power | observedState |
// | --------------------- | --------------------------- | -------------------------- | ----- | ------------- |
// | Creating              | any                         | any                        | off   | BeingCreated  |
// | Deleting              | any                         | any                        | off   | BeingDeleted  |
// | Failed, Canceled      | none, unknown               | any                        | off   | CreateFailed  |
// | any other             | starting                    | booting, unknown           | on    | Starting      |
// | any other             | starting                    | none, ready, failed,       | on    | PoweredOn     |
// |                       |                             | stopping                   |       |               |
// | any other             | running                     | ready                      | on    | Running       |
// | any other             | running                     | unknown                    | on    | Running       |
// |                       |                             | (agent unknown)            |       |               |
// | any other             | running                     | none (powered on, no boot) | on    | PoweredOn     |
// | any other             | running                     | booting                    | on    | Starting      |
// | any other             | running                     | failed                     | on    | BootFailed    |
// | any other             | stopping                    | any                        | on    | ShuttingDown  |
// | any other             | stopped, deallocating,      | any                        | off   | PoweredOff    |
// |                       | deallocated, none, unknown  |                            |       |               |
// | (404: no such VM)     |                             |                            |       | (absent)      |
//
// "unknown" agent: no report since this DMZ client started (a restart), or a
// ready report older than the VM's last operation (a start or restart from the
// portal since; the driver passes it as undefined: isCurrentReport);
// a running fleet VM got there through an approved boot, so it counts as
// Running, but says agent `unknown`, not `ready`: nothing here saw its
// handshake complete, and `fleet import` records it Running only when the
// record confirms that boot (importedState). A starting one may be in a boot this client knows nothing of (its
// agent asking with a token of another client's boot): Starting, as EC2's
// pending, so `fleet import` records it BootFailed and the next apply powers
// it off before booting it afresh (engine/cli/commands/import.ts, importedState),
// where PoweredOn had it booted again while its old agent was denied and
// powered it off. A VM the authority denied powers itself off and is deleted.
import type { AgentState, ObservedAgent, PowerState } from '../../../protocol/index.ts';

/** What the instance view's `PowerState/<x>` status says; `none` when it has none (being created, or not asked). */
export type AzurePowerState = 'starting' | 'running' | 'stopping' | 'stopped' | 'deallocating' | 'deallocated' | 'unknown' | 'none';

export interface MappedState {
  power: PowerState;
  agent: ObservedAgent;
  observedState: string;
}

const POWER_STATES: readonly AzurePowerState[] = ['starting', 'running', 'stopping', 'stopped', 'deallocating', 'deallocated', 'unknown'];

/** The PowerState among an instance view's statuses (`PowerState/running` -> running). */
export function powerStateOf(statuses: readonly { code?: string }[] | undefined): AzurePowerState {
  for (const s of statuses ?? []) {
    const m = /^PowerState\/(.+)$/i.exec(s.code ?? '');
    if (m) {
      const p = m[1].toLowerCase() as AzurePowerState;
      return POWER_STATES.includes(p) ? p : 'unknown';
    }
  }
  return 'none';
}

/** The provisioning state among an instance view's statuses, or the VM's own property (`ProvisioningState/succeeded`). */
export function provisioningStateOf(property: string | undefined, statuses: readonly { code?: string }[] | undefined): string {
  if (property) return property;
  for (const s of statuses ?? []) {
    const m = /^ProvisioningState\/([^/]+)/i.exec(s.code ?? '');
    if (m) return m[1].charAt(0).toUpperCase() + m[1].slice(1);
  }
  return 'Succeeded';
}

/**
 * When the VM's last operation ended, as ARM says: the `time` of the instance view's `ProvisioningState/<x>` status
 * (a start, a restart, a PATCH among them). CloudVm.startedAt: a run began no later, so a report from before it is of
 * a run before (an agent report, an approved boot; isCurrentReport). Undefined when there is none.
 */
export function provisionedAt(statuses: readonly { code?: string; time?: Date | string }[] | undefined): string | undefined {
  for (const s of statuses ?? []) {
    if (!/^ProvisioningState\//i.test(s.code ?? '') || s.time === undefined) continue;
    const t = s.time instanceof Date ? s.time : new Date(s.time);
    return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
  }
  return undefined;
}

/** The table above. `agent` is this client's last agent report for the VM, or undefined when it has none. */
export function mapAzureState(provisioningState: string, power: AzurePowerState, agent: AgentState | undefined): MappedState {
  const ps = provisioningState.toLowerCase();
  if (ps === 'creating') return { power: 'off', agent: 'none', observedState: 'BeingCreated' };
  if (ps === 'deleting') return { power: 'off', agent: 'none', observedState: 'BeingDeleted' };
  // Canceled: ARM stopped the create (another operation preempted it); like Failed, a VM never made.
  if ((ps === 'failed' || ps === 'canceled') && (power === 'none' || power === 'unknown')) return { power: 'off', agent: 'none', observedState: 'CreateFailed' };
  switch (power) {
    case 'starting':
      return agent === 'booting' || agent === undefined ? { power: 'on', agent: 'booting', observedState: 'Starting' } : { power: 'on', agent: 'none', observedState: 'PoweredOn' };
    case 'running':
      switch (agent) {
        case undefined:
          return { power: 'on', agent: 'unknown', observedState: 'Running' };
        case 'ready':
          return { power: 'on', agent, observedState: 'Running' };
        case 'none':
          return { power: 'on', agent, observedState: 'PoweredOn' };
        case 'booting':
          return { power: 'on', agent, observedState: 'Starting' };
        case 'failed':
          return { power: 'on', agent, observedState: 'BootFailed' };
        case 'stopping':
          return { power: 'on', agent, observedState: 'ShuttingDown' };
      }
      break;
    case 'stopping':
      return { power: 'on', agent: 'stopping', observedState: 'ShuttingDown' };
  }
  return { power: 'off', agent: 'none', observedState: 'PoweredOff' };
}
