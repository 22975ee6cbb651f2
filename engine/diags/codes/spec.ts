import { defineCodes } from './types.ts';

// Diagnostic codes of engine/spec. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const specCodes = defineCodes({
  'spec.stack-not-found': {
    summary: 'Stack file not found',
    doc: 'The stack folder has no stack.yaml (or the folder does not exist). Pass the folder holding stack.yaml with --stack; the default is stacks/local.',
    severity: 'error',
  },
  'spec.read-error': {
    summary: 'Cannot read file',
    doc: 'A stack or fleet file exists but could not be read (permissions, a folder where a file was expected, or a named pipe, socket or device, which is never read), or a folder a `specs` glob must list could not be (permissions, a link loop; located at the glob). The detail carries the operating system error.',
    severity: 'error',
  },
  'spec.yaml-syntax': {
    summary: 'YAML syntax error',
    doc: 'The file is not valid YAML (bad indentation, an unclosed quote or bracket, a key given twice in one mapping (also written two ways that name the same key: `1` and `"1"`, `""` and `~`), a tab used for indentation, a byte that is not UTF-8, lists and mappings nested more than 64 deep), or uses YAML that dmzfleet does not read: a tag other than the core schema\'s `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map` (`!custom`, `!!binary`), a directive other than `%YAML 1.2` and `%TAG`, or aliases that expand to more than 1000 values (an alias bomb). Fix the text at the position shown; nothing else in that document is checked.',
    severity: 'error',
  },
  'spec.empty-file': {
    summary: 'Empty file',
    doc: 'A stack or fleet file holds no YAML document (or only comments). Delete the file, or narrow the stack\'s `specs` globs so they do not match it.',
    severity: 'error',
  },
  'spec.extra-document': {
    summary: 'More than one document in stack file',
    doc: 'stack.yaml must hold exactly one document (kind Stack). Fleet files may hold several documents separated by `---`; a stack file may not.',
    severity: 'error',
  },
  'spec.api-version': {
    summary: 'Unsupported apiVersion',
    doc: 'Every document must start with `apiVersion: fleet/v1`. A document with another version is not checked further.',
    severity: 'error',
  },
  'spec.kind': {
    summary: 'Unexpected kind',
    doc: 'The document\'s `kind` is not the one this file must hold: `Stack` in stack.yaml, `Fleet` in the files matched by the stack\'s `specs` globs. A document of the wrong kind is not checked further.',
    severity: 'error',
  },
  'spec.unknown-key': {
    summary: 'Unknown key',
    doc: 'The key is not part of the file format (often a typo or a key at the wrong indentation). docs/formats.md lists every key; the detail names the keys allowed at that place.',
    severity: 'error',
  },
  'spec.wrong-type': {
    summary: 'Wrong type',
    doc: 'The value has the wrong type, for example a string where a number is expected, or a fraction where a whole number is expected.',
    severity: 'error',
  },
  'spec.missing-field': {
    summary: 'Missing required field',
    doc: 'A required key is absent. The location points at the object that lacks it; the detail names the key.',
    severity: 'error',
  },
  'spec.out-of-range': {
    summary: 'Value out of range',
    doc: 'A number is below its minimum or above its maximum, a string is empty where text is required (a label\'s key included) or longer than its limit (a stack, site or data center name: 40 characters; a fleet\'s owner: 64; a label\'s key: 63 and its value: 256; the detail says the length and why), a list has fewer items than required, or a mapping more entries than allowed (a fleet\'s labels: 64, told at the first key past the limit). The number is shown as written in the file (`99999999999999999999`, `0x100`), not as the nearest number the parser could hold. docs/formats.md gives each field\'s range.',
    severity: 'error',
  },
  'spec.invalid-value': {
    summary: 'Invalid value',
    doc: 'The value is not one of the allowed values (for example a placement strategy other than nearest, spread or pack; a likely typo is named with the value meant: `driver: simm` (did you mean "sim"?)), repeats an item of a list that must be unique, or does not have the required form.',
    severity: 'error',
  },
  'spec.invalid-fleet-name': {
    summary: 'Invalid fleet name',
    doc: 'Fleet names are used in VM addresses and VM names: lower-case letters, digits and dashes, starting with a letter, at most 40 characters.',
    severity: 'error',
  },
  'spec.duplicate-fleet': {
    summary: 'Duplicate fleet name',
    doc: 'Two fleet documents of the stack have the same `metadata.name`. Fleet names are unique in a stack; the detail names the other document\'s location.',
    severity: 'error',
  },
  'spec.min-count-above-count': {
    summary: 'minCount is greater than count',
    doc: '`minCount` is the smallest number of members the fleet accepts from a policy grant, so it cannot exceed the `count` asked for. Lower minCount or raise count.',
    severity: 'error',
  },
  'spec.rollout-invalid': {
    summary: 'Rollout settings allow no progress',
    doc: 'A fleet\'s `rollout` settings could never roll a change out: `maxUnavailable` and `maxSurge` both 0 (no member may leave Running and none may be replaced by a surge VM first), or `failureThreshold` 0. Allow one of maxUnavailable or maxSurge at least 1, and a failureThreshold of at least 1. docs/rollouts.md explains the settings.',
    severity: 'error',
  },
  'spec.unknown-data-center': {
    summary: 'Unknown data center',
    doc: 'A fleet\'s `placement.dataCenters` names a data center the stack does not define. Use one of the names in stack.yaml\'s `dataCenters`.',
    severity: 'error',
  },
  'spec.unknown-near': {
    summary: 'Unknown placement reference point',
    doc: 'A fleet\'s `placement.near` names neither the stack\'s site nor one of its data centers. Use one of those names, or coordinates `{ lat, lon }`.',
    severity: 'error',
  },
  'spec.state-not-requestable': {
    summary: 'State cannot be requested',
    doc: 'A fleet\'s `state` is not one of the states the policy pack lets a spec ask for (its lifecycle `requestable` list, in the default pack `Running` and `PoweredOff`). Other states are reached only by the engine itself. A name that is no state of the lifecycle is named with the requestable state it is closest to (`Runing`: did you mean "Running"?).',
    severity: 'error',
  },
  'spec.unknown-image': {
    summary: 'Unknown image',
    doc: 'The fleet\'s logical image is not in the policy pack\'s image catalog, so no data center could translate it. Use a catalogued image or add it to the pack.',
    severity: 'error',
  },
  'spec.image-not-offered': {
    summary: 'Image not offered where the fleet may be placed',
    doc: 'The image is in the pack\'s catalog, but none of the data centers the fleet may use (its placement allow-list, or all of the stack\'s) has a translation for it, so no member could be created.',
    severity: 'error',
  },
  'spec.hardware-unavailable': {
    summary: 'Hardware trait not offered',
    doc: 'A fleet asks for a hardware trait that no data center it may use offers, or no single data center offers all the traits it asks for together. Fix the trait name, widen the placement allow-list, or add the trait to a data center in stack.yaml.',
    severity: 'error',
  },
  'spec.no-instance-types': {
    summary: 'Cloud data center has no instance types',
    doc: 'A data center runs a cloud driver (aws, azure) but the policy pack\'s instanceTypes catalog has no entry for it, so no VM size could be given an instance type there. Add the data center to the pack\'s instanceTypes.',
    severity: 'error',
  },
  'spec.size-not-offered': {
    summary: 'Size fits no instance type',
    doc: 'A fleet may be placed in a cloud data center whose instance-type catalog (policy pack, instanceTypes) has no type with at least the fleet\'s CPUs and memory. Pick a smaller size, add a larger type to the catalog, or leave the data center out of placement.dataCenters.',
    severity: 'error',
  },
  'spec.glob-no-match': {
    summary: 'Spec glob matches nothing',
    doc: 'A glob in the stack\'s `specs` list matched no file. Globs are relative to stack.yaml; a glob that matches nothing is usually a wrong path, so it is an error rather than an empty stack. The detail names the first folder (or file) of the glob that is not there and, when one with a close name is (`spec/` for `specs/`), or the other of .yml and .yaml would do, the glob that matches files.',
    severity: 'error',
  },
  'spec.pack-not-found': {
    summary: 'Policy pack not found',
    doc: 'The stack\'s `policyPack.path` is not a folder holding policy.yaml, or its policy.yaml cannot be looked at (no permission to the folder, a link loop). The path is relative to stack.yaml.',
    severity: 'error',
  },
  'spec.duplicate-data-center': {
    summary: 'Duplicate data center name',
    doc: 'Two entries of the stack\'s `dataCenters` have the same name. Each data center appears once; the detail names the other entry\'s location.',
    severity: 'error',
  },
  'spec.sim-ignored': {
    summary: 'Simulator settings apply only to a served DMZ client',
    doc: 'A data center has `sim` settings but its address is a DMZ client URL, so the CLI starts no simulator for it: the settings are used only by `fleet serve dmz-client --data-center NAME` with the sim driver serving that data center. Remove them if that data center runs a real cloud driver, or set the address to embedded to have the CLI run the simulator.',
    severity: 'warning',
  },
  'spec.record-url': {
    summary: 'Malformed record URL',
    doc: 'The record URL (stack.yaml `record`, or the FLEET_RECORD_URL environment variable, which overrides it) must be `pglite://DIR` with a non-empty folder, or a well-formed `postgres://user@host:port/db` URL.',
    severity: 'error',
  },
});
