import { defineCodes } from './types.ts';

// Diagnostic codes of engine/plan. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const planCodes = defineCodes({
  'plan.unknown-fleet': {
    summary: 'Unknown fleet',
    doc: 'A --target, --exclude or --allow-destroy names a fleet that is neither in the stack\'s specs nor in the record (--exclude and --allow-destroy take fleet names, not member addresses). Check the spelling; `fleet state list` shows the fleets of the record.',
    severity: 'error',
  },
  'plan.unknown-member': {
    summary: 'Unknown member',
    doc: 'A --target or --replace names a member address (`web/3`) that is not a member of its fleet: --replace needs a live VM in the record, --target a live VM or an index below the fleet\'s count. `fleet state list` shows the members.',
    severity: 'error',
  },
  'plan.blocked': {
    summary: 'Plan blocked by policy',
    doc: 'The plan has at least one mandatory policy violation, so it cannot be applied. The plan and every violation are printed; fix the specs, or the stack\'s policy settings, or pass the override a violation\'s hint names (such as --allow-destroy).',
    severity: 'error',
  },
  'plan.out-failed': {
    summary: 'Cannot write the plan file',
    doc: 'The plan document could not be written to the --out path (missing folder, no permission, disk full), or the path is one of the files the plan is made from (the stack file, a fleet spec file, the pack\'s policy.yaml or a rule module, or a link to one), which it would replace. The detail names the path and the cause.',
    severity: 'error',
  },
  'plan.refresh-failed': {
    summary: 'Refresh failed',
    doc: '`fleet plan --refresh` could not ask a data center for its VMs (its DMZ client did not answer). Plan without --refresh, or bring the DMZ client back.',
    severity: 'error',
  },
});
