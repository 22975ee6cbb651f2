import { defineCodes } from './types.ts';

// Diagnostic codes of saved plans' integrity checks (engine/plan/integrity.ts),
// raised by `fleet apply PLANFILE` before it takes any lock.
export const integrityCodes = defineCodes({
  'apply.plan-unsigned': {
    summary: 'Plan file has no seal',
    doc: 'Only plans saved by `fleet plan --out` carry a seal that this stack\'s record can verify, and only those are applied. Plan again and apply the new file.',
    severity: 'error',
  },
  'apply.plan-tampered': {
    summary: 'Plan file changed after it was saved',
    doc: 'The saved plan\'s content does not match the digest it was sealed with, or its signature does not verify: the file was edited (a `blocked` flag, a change, a vmId) or made elsewhere. Never edit a saved plan; plan again.',
    severity: 'error',
  },
  'apply.plan-foreign': {
    summary: 'Plan belongs to another stack',
    doc: 'The saved plan was sealed for another stack (its stack id differs from this stack record\'s, even if the names match) or with a key this record does not hold. Apply it with the stack and record it was made against, or plan again here.',
    severity: 'error',
  },
  'apply.plan-scope': {
    summary: 'Change outside the plan\'s scope',
    doc: 'A change in the saved plan acts on a fleet that is not in the plan\'s `fleets` (so it would be neither locked nor stale-checked), on a VM or fleet whose version the basis does not hold, or at an address that is not its fleet and index. The plan was not made by `fleet plan`; plan again.',
    severity: 'error',
  },
});
