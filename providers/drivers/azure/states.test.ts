// The provisioningState x PowerState table (states.ts, docs/drivers/azure.md), row by row.
import { describe, expect, it } from 'vitest';
import type { AgentState } from '../../../protocol/index.ts';
import { mapAzureState, powerStateOf, provisioningStateOf, type AzurePowerState } from './states.ts';

describe('Azure state mapping', () => {
  const rows: [string, AzurePowerState, AgentState | undefined, string, 'on' | 'off'][] = [
    ['Creating', 'none', undefined, 'BeingCreated', 'off'],
    ['Creating', 'starting', undefined, 'BeingCreated', 'off'],
    ['Deleting', 'running', 'ready', 'BeingDeleted', 'off'],
    ['Failed', 'none', undefined, 'CreateFailed', 'off'],
    ['Failed', 'running', 'ready', 'Running', 'on'],
    ['Canceled', 'none', undefined, 'CreateFailed', 'off'],
    ['Succeeded', 'starting', 'none', 'PoweredOn', 'on'],
    ['Succeeded', 'starting', 'booting', 'Starting', 'on'],
    // No report here (another client's boot, a restart without the state folder): it may be booting, as EC2's pending.
    ['Succeeded', 'starting', undefined, 'Starting', 'on'],
    ['Succeeded', 'running', undefined, 'Running', 'on'],
    ['Succeeded', 'running', 'ready', 'Running', 'on'],
    ['Succeeded', 'running', 'none', 'PoweredOn', 'on'],
    ['Updating', 'running', 'booting', 'Starting', 'on'],
    ['Succeeded', 'running', 'failed', 'BootFailed', 'on'],
    ['Succeeded', 'running', 'stopping', 'ShuttingDown', 'on'],
    ['Succeeded', 'stopping', 'ready', 'ShuttingDown', 'on'],
    ['Succeeded', 'stopped', 'failed', 'PoweredOff', 'off'],
    ['Succeeded', 'deallocating', undefined, 'PoweredOff', 'off'],
    ['Succeeded', 'deallocated', undefined, 'PoweredOff', 'off'],
    ['Succeeded', 'unknown', undefined, 'PoweredOff', 'off'],
  ];
  it.each(rows)('%s x PowerState/%s, agent %s -> %s', (ps, power, agent, observed, on) => {
    const m = mapAzureState(ps, power, agent);
    expect(m.observedState).toBe(observed);
    expect(m.power).toBe(on);
  });

  it('reads the instance view statuses', () => {
    const statuses = [{ code: 'ProvisioningState/succeeded' }, { code: 'PowerState/deallocated' }];
    expect(powerStateOf(statuses)).toBe('deallocated');
    expect(powerStateOf([{ code: 'PowerState/hibernated' }])).toBe('unknown');
    expect(powerStateOf(undefined)).toBe('none');
    expect(provisioningStateOf(undefined, statuses)).toBe('Succeeded');
    expect(provisioningStateOf(undefined, [{ code: 'ProvisioningState/creating' }])).toBe('Creating');
    expect(provisioningStateOf('Deleting', statuses)).toBe('Deleting');
  });
});
