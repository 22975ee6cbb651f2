import { createHash } from 'node:crypto';
import type { PlanDocument } from './types.ts';

/**
 * Stable digest of what a plan will do (its changes and the basis they were
 * computed against): recorded with the applied plan (`plans.digest`) and shown
 * in the pull-request comment, so a reviewer can tell the plan that was
 * applied is the one that was reviewed.
 */
export function planDigest(plan: Pick<PlanDocument, 'basis' | 'changes'>): string {
  return createHash('sha256').update(JSON.stringify({ basis: plan.basis, changes: plan.changes })).digest('hex').slice(0, 32);
}
