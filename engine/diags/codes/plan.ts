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
    doc: 'A --target or --replace names a member address (`web/3`) that is not a member of its fleet: --replace needs a live VM in the record that its fleet\'s spec still wants (an index below count: a VM the plan deletes is not replaced), --target a live VM or an index below the fleet\'s count. `fleet state list` shows the members.',
    severity: 'error',
  },
  'plan.blocked': {
    summary: 'Plan blocked by policy',
    doc: 'The plan has at least one mandatory policy violation, so it cannot be applied. The plan and every violation are printed; fix the specs, or the stack\'s policy settings, or pass the override a violation\'s hint names (such as --allow-destroy).',
    severity: 'error',
  },
  'plan.out-failed': {
    summary: 'Cannot write the plan file',
    doc: 'The plan document could not be written to the --out path (missing folder, no permission, disk full), or the path is one of the files the plan is made from (the stack file, a fleet spec file, the pack\'s policy.yaml or a rule module, or a link to one), which it would replace, or a new file a `specs` glob of the stack would read as a fleet spec, or a file inside what fleet keeps of the stack (its .fleet folder, or a PGlite record kept elsewhere). The detail names the path and the cause.',
    severity: 'error',
  },
  'plan.program-fleet': {
    summary: 'Fleet managed by a program, left alone',
    doc: 'The record holds a fleet with live VMs that a program made (a Pulumi `Fleet` or `Vm` of `providers/pulumi`: the record\'s `fleets.managed_by`, shown by `fleet state list`), and no fleet file declares it. `fleet plan` and `fleet apply` leave it alone (planning it would delete the program\'s VMs); it still counts for quotas and capacity. Remove it with the program (`pulumi destroy`, or its resource removed and `pulumi up`).',
    severity: 'warning',
  },
  'plan.data-center-gone': {
    summary: 'VMs live in a data center the stack no longer lists',
    doc: 'The record holds live VMs in a data center that stack.yaml\'s dataCenters no longer lists (removed from the stack, or renamed). No plan can reach them: they are left as they are, and a change the plan makes to one (a delete, a resize) stops `fleet apply` with `apply.no-client` before any member starts. Add the data center back to change or delete them there (a count lowered deletes them), or forget each with `fleet state rm ADDRESS` (its VM stays in that data center, to be deleted there by hand): the next apply creates a member the spec still wants again in a listed data center.',
    severity: 'warning',
  },
  'plan.two-managers': {
    summary: 'Fleet declared by a fleet file and managed by a program',
    doc: 'A fleet file declares a fleet whose live VMs a program made (a Pulumi `Fleet` or `Vm`: the record\'s `fleets.managed_by`). One fleet has one manager: fleet apply would take over (and delete or change) the program\'s VMs, and the program would undo it. Nothing was planned. Rename the fleet in the fleet file, or remove it from the program first (`pulumi destroy`) and apply the file then.',
    severity: 'error',
  },
  'plan.refresh-failed': {
    summary: 'Refresh failed',
    doc: '`fleet plan --refresh` could not ask a data center for its VMs (its DMZ client did not answer). Plan without --refresh, or bring the DMZ client back.',
    severity: 'error',
  },
});
