import { defineCodes } from './types.ts';

// Diagnostic codes of engine/policy. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const policyCodes = defineCodes({
  'policy.pack-missing': {
    summary: 'Policy pack not found',
    doc: 'The pack folder or its policy.yaml does not exist, or cannot be looked at (no permission to the folder, a link loop). Check `policyPack.path` in the stack file (relative to stack.yaml).',
    severity: 'error',
  },
  'policy.read-error': {
    summary: 'Cannot read file',
    doc: 'policy.yaml, a policy test case, or the pack\'s tests folder exists but could not be read (permissions, a folder where a file was expected, a link loop, or a named pipe, socket or device, which is never read). The detail carries the operating system error.',
    severity: 'error',
  },
  'policy.yaml-syntax': {
    summary: 'Invalid YAML in policy pack',
    doc: 'policy.yaml (or a policy test case) is not well-formed YAML, or not UTF-8; or policy.yaml uses YAML that dmzfleet does not read (a tag other than YAML\'s core ones, a directive other than `%YAML 1.2` and `%TAG`, aliases that expand to more than 1000 values), as for `spec.yaml-syntax`. Fix the syntax at the position shown.',
    severity: 'error',
  },
  'policy.schema': {
    summary: 'Policy pack does not match its schema',
    doc: 'A key of policy.yaml is missing, unknown or of the wrong type, a number is not finite (YAML\'s `.inf`, `-.inf`, `.nan`), or a name the pack writes does not read as what it is: a lifecycle state (wherever the diagram writes one), a logical image, a data center or a real image of the image catalog, an instance type or a data center of the instance-type catalog, or a data center of `powerOff`, holding a character that does not show (a control, zero-width or direction character), a space at either end, or a letter not composed (Unicode NFC); see specs/schema/policy-pack.schema.json.',
    severity: 'error',
  },
  'policy.unknown-state': {
    summary: 'Unknown lifecycle state',
    doc: 'A transition, the initial state, or a terminal, requestable or failure entry names a state that is not in `lifecycle.states`.',
    severity: 'error',
  },
  'policy.unknown-operation': {
    summary: 'Unknown lifecycle operation',
    doc: 'A transition names an `operation` that no driver carries out (a typo such as `powerOnn`). Use one of createVm, powerOn, boot, awaitReady, shutdown, powerOff, resize, deleteVm, or none when only the record changes (engine/model/operation.ts).',
    severity: 'error',
  },
  'policy.duplicate-edge': {
    summary: 'Duplicate lifecycle transition',
    doc: 'The same from -> to transition is listed twice; every state change must match exactly one edge. Remove one.',
    severity: 'error',
  },
  'policy.unreachable-state': {
    summary: 'Lifecycle state unreachable',
    doc: 'No path of transitions leads from the initial state to this state, so no VM can ever be in it. Add a transition or remove the state.',
    severity: 'error',
  },
  'policy.terminal-exit': {
    summary: 'Terminal state has outgoing transitions',
    doc: 'A terminal state is final: a deleted VM cannot come back. Remove the transition or the state from `terminal`.',
    severity: 'error',
  },
  'policy.requestable-unreachable': {
    summary: 'Requestable state unreachable',
    doc: 'A fleet spec may ask for this state, but no path leads to it from the initial state. Add transitions that reach it.',
    severity: 'error',
  },
  'policy.requestable-through-failure': {
    summary: 'Requestable state reachable only through a failure state',
    doc: 'A fleet spec may ask for this state, but every path to it from the initial state passes a failure state. Plans never pass a failure state (they are reached only when a create or boot fails), so no fleet could ever get there. Add a transition that reaches it from a normal state.',
    severity: 'error',
  },
  'policy.requestable-terminal': {
    summary: 'Terminal state is requestable',
    doc: 'A state listed in lifecycle.terminal is also in lifecycle.requestable. A fleet asking for it would have every apply create its members only to delete them, and the next plan create them again. Remove it from requestable: members are deleted by lowering a fleet\'s count or removing its spec.',
    severity: 'error',
  },
  'policy.requestable-failure': {
    summary: 'Failure state is requestable',
    doc: 'A state listed in lifecycle.failure is also in lifecycle.requestable. Failure states are reached only by outcomes, never planned; remove it from one of the two lists.',
    severity: 'error',
  },
  'policy.initial-failure': {
    summary: 'Initial state is a failure state',
    doc: 'The lifecycle\'s `initial` state is also listed in `failure`. Every create puts its VM in the initial state, so every plan would step into a failure state, which plans never do: failure states are reached only by outcomes (a create the cloud refuses, a boot the authority denies). Take it out of `failure`, or give the diagram another initial state.',
    severity: 'error',
  },
  'policy.dead-end': {
    summary: 'Lifecycle state cannot reach a terminal state',
    doc: 'A VM in this state could never be deleted: no path of transitions leads from it to a terminal state, or every such path passes a failure state, which plans never enter. Add a path from it to a terminal state that passes no failure state.',
    severity: 'error',
  },
  'policy.instance-type': {
    summary: 'Invalid instance-type catalog entry',
    doc: 'An entry of the pack\'s instanceTypes catalog is wrong beyond its schema (a type listed twice for one data center). Fix the entry the diagnostic points at.',
    severity: 'error',
  },
  'policy.unknown-rule': {
    summary: 'Unknown policy rule',
    doc: 'Rule settings name a rule that is neither built in nor defined by one of the pack\'s modules. Check the spelling or add the module.',
    severity: 'error',
  },
  'policy.rule-config': {
    summary: 'Invalid rule config',
    doc: 'A rule\'s settings (in the pack\'s `rules` or the stack\'s `policyPack.config`) do not match the rule\'s config schema (owner-quota\'s `limits` naming an owner no fleet can have: empty, or longer than a fleet\'s owner, 64 characters; told at the key), name an owner or a label no fleet can have (owner-quota\'s owners, require-encrypted-disk\'s `match` keys and values, holding a character that does not show, a space at either end or a letter not composed, as a fleet\'s owner and labels may not), or a setting is a number that is not finite (YAML\'s `.inf`, `-.inf`, `.nan`: for no limit, leave a quota\'s key out).',
    severity: 'error',
  },
  'policy.module-load': {
    summary: 'Cannot load rule module',
    doc: 'A module listed in the pack\'s `modules` lies outside the pack folder (an absolute path, a path whose `..` leave it, or a link whose target is outside it), failed to import, did not finish loading (its top-level code still waited after 30 s, or waited on a promise nothing will settle), or its default export is not a rule (name, description, configSchema, checkChange and/or checkPlan) or an array of rules, or names a rule with a character that does not show, a space at either end or a letter not composed (a rule\'s name is matched exactly and named in every violation).',
    severity: 'error',
  },
  'policy.rule-timeout': {
    summary: 'Policy rule did not finish in time',
    doc: 'A custom rule\'s checks were still running at the pack\'s deadline (`spec.ruleTimeoutSeconds` in policy.yaml, default 10 s, for all of a rule\'s checkChange calls and its checkPlan over one plan, or its checkRequest on one request) and were stopped. The rule counts as a mandatory violation, so the plan is blocked and the authority vetoes the request (`policy-veto`). The diagnostic names the rule, the check and the change it was on, and points at the check in its module. Fix the check (a loop that never ends, or work that grows too fast with the plan), raise `spec.ruleTimeoutSeconds`, or set the rule to `enforcement: disabled` in the stack\'s `policyPack.config`.',
    severity: 'error',
  },
  'policy.duplicate-rule': {
    summary: 'Duplicate rule name',
    doc: 'Two rules (built in or from modules) have the same name. Rename the custom rule.',
    severity: 'error',
  },
  'policy.test-case': {
    summary: 'Invalid policy test case',
    doc: 'A file under the pack\'s tests/ folder is not a valid test case (stack, specs, record, options, expect), or is one that tests nothing: it plans no member (no fleet with members, no record VM) and expects no violation or grant, so it would pass whatever the pack says. See docs/policy.md.',
    severity: 'error',
  },
  'policy.no-tests': {
    summary: 'No policy test cases',
    doc: 'The pack\'s tests/ folder holds no test case (a `*.yaml` or `*.yml` file directly in it; subfolders are not read), so `fleet policy test` would pass having tested nothing. Add cases, or fix their names.',
    severity: 'error',
  },
});
