// fleet apply proposes, and the authority's plan gate expects, this id for
// the VM a plan creates at an address (engine/apply/member.ts, engine/authority/plan-seals.ts).
import { describe, expect, it } from 'vitest';
import { proposedVmId as applyProposes } from '../apply/executor.ts';
import { proposedVmId } from './vm-id.ts';

describe('proposedVmId', () => {
  it.each([
    ['plan-1', 'web/0'],
    ['0b6f7a0e-1a2b-4c3d-8e9f-001122334455', 'db/12'],
    ['p', 'x/999999999'],
  ])('is a UUID (version 4 shape) fixed by plan %s and address %s', (planId, address) => {
    const id = proposedVmId(planId, address);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(proposedVmId(planId, address)).toBe(id);
    expect(proposedVmId(`${planId}x`, address)).not.toBe(id);
    expect(proposedVmId(planId, `${address}0`)).not.toBe(id);
  });

  it('is the one apply proposes', () => {
    expect(applyProposes).toBe(proposedVmId);
  });
});
