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
    doc: 'The saved plan was sealed for another stack (its stack id differs from this stack record\'s, even if the names match) or with a key this record does not hold, or the stack has no record at all (`fleet plan --out` creates it; applying a saved plan creates none). Apply it with the stack and record it was made against, or plan again here.',
    severity: 'error',
  },
  'apply.plan-scope': {
    summary: 'Change outside the plan\'s scope',
    doc: 'A change in the saved plan acts on a fleet that is not in the plan\'s `fleets` (so it would be neither locked nor stale-checked), on a VM or fleet whose version the basis does not hold, or at an address that is not its fleet and index. The plan was not made by `fleet plan`; plan again.',
    severity: 'error',
  },
  'apply.authority-unreachable': {
    summary: 'Authority not reachable',
    doc: 'A deployed stack (one with `authority` in stack.yaml) seals its plans at its authority (`fleet plan --out`) and registers them there before `fleet apply` sends any request; the authority could not be reached (connection refused, no answer, a TLS certificate not trusted: give `authority.caFile`; a client certificate refused or missing: give `authority.certFile` and `authority.keyFile`; a plain `http://` address of a service that serves TLS) or answered with a server error. Nothing was sealed or applied; try again when the authority answers.',
    severity: 'error',
  },
  'apply.authority-refused': {
    summary: 'Authority refused the plan call',
    doc: 'The authority refused to seal or register the plan for another reason than its content: the CLI\'s token at the authority is missing from its configuration or wrong (`authority.tokenEnv` in stack.yaml, default FLEET_AUTHORITY_TOKEN; the authority reads the same variable), or the authority serves no plan routes (it was started without that token). Nothing was sealed or applied.',
    severity: 'error',
  },
});
