// The VM id a plan's create proposes (fleet apply and the authority's plan
// gate must agree on it).
import { createHash } from 'node:crypto';

/**
 * The id `fleet apply` proposes for the VM a plan creates at an address (a
 * create, or a replace's new VM): a UUID derived from the plan id and the
 * address, so a re-sent create proposes the same VM, and the authority can
 * tell a VM a registered plan created from any other (engine/authority,
 * plan-seals.ts). Its own file, outside model/index.ts: it needs node:crypto, which
 * Pulumi cannot serialize into a dynamic provider that imports the model.
 */
export function proposedVmId(planId: string, address: string): string {
  const h = createHash('sha256').update(`${planId}\0${address}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
