// The authority admits a registered plan's requests on the VMs it creates by
// the id apply proposes for them (engine/model proposedVmId): both must agree.
import { describe, expect, it } from 'vitest';
import { proposedVmId as modelId } from '../model/index.ts';
import { proposedVmId } from './executor.ts';

describe('proposedVmId', () => {
  it.each([
    ['plan-1', 'web/0'],
    ['0b6f7a0e-1a2b-4c3d-8e9f-001122334455', 'db/12'],
    ['p', 'x/999999999'],
  ])('apply and the model propose the same id for %s %s', (planId, address) => {
    expect(proposedVmId(planId, address)).toBe(modelId(planId, address));
  });
});
