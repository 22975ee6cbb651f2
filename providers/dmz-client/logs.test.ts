// The DMZ client's step lines (docs/operations.md "Logs"): a step carried out
// is logged at debug, a vetoed or failed one at info, so at the default level
// (info) only what went otherwise than asked is written, and the routine line
// is not even built.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { createRequest, newVm, startTestWorld } from '../testing.ts';

let record: FleetRecord;
beforeAll(async () => {
  record = await openRecord('memory://');
});
afterAll(async () => {
  await record.close();
});

describe('DMZ client step lines', () => {
  it.each([
    { level: 'info' as const, okLogged: false },
    { level: 'debug' as const, okLogged: true },
  ])('at $level: the vetoed step is logged; the step carried out: $okLogged', async ({ level, okLogged }) => {
    const lines: Record<string, unknown>[] = [];
    const logger = { level, stream: { write: (text: string) => void lines.push(...text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)) } };
    const world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { logger } });
    try {
      const { client } = world.dc('miami');
      const vm = newVm(world.stack);
      expect((await client.createVm(createRequest(vm))).outcome).toBe('ok');
      // Requested -> Running is not one edge: vetoed.
      const vetoed = await client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Requested', to: 'Running' });
      expect(vetoed.outcome).toBe('vetoed');
    } finally {
      await world.close();
    }
    const steps = lines.filter((l) => l.msg === 'step');
    expect(steps.filter((l) => l.outcome === 'vetoed')).toEqual([
      expect.objectContaining({ level: 30, dataCenter: 'miami', op: 'transition', from: 'Requested', to: 'Running', decision: 'vetoed', operation: 'none' }),
    ]);
    const ok = steps.filter((l) => l.outcome === 'ok');
    expect(ok).toEqual(okLogged ? [expect.objectContaining({ level: 20, dataCenter: 'miami', op: 'create', outcome: 'ok', vm: 'web/0', state: 'Requested' })] : []);
  });
});
