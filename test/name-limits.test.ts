// The names a stack file gives (the stack's, a data center's, an AWS region)
// end up where lengths are limited: a VM's name `<stack>-<fleet>-<index>` in
// an EC2 or Azure tag value (256 characters), the stack and the region in an
// AWS data center's session policy (STS: 2048 characters), a data center's
// name in file names (255 bytes). The schemas' limits must keep every name
// they accept within those, for every accepted name, not one example: the
// worst cases (characters JSON escapes, letters of 2 and 4 UTF-8 bytes) and
// many generated ones. A 200,000-character stack name used to validate.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { sessionPolicy } from '../engine/authority/credentials/aws.ts';
import { unseenProblem } from '../engine/diags/index.ts';
import { isFleetName, parseVmAddress } from '../engine/model/address.ts';
import { proposedVmId } from '../engine/model/vm-id.ts';
import { seededRandom } from '../engine/model/seeded-random.ts';
import { ownerQuotaRule } from '../engine/policy/rules/builtin.ts';
import { vmName } from '../engine/record/rows.ts';
import { resourceNames } from '../providers/drivers/azure/names.ts';
import { simLogFile, simStateFile } from '../providers/drivers/sim/index.ts';

type Schema = { minLength?: number; maxLength?: number; maxProperties?: number; pattern?: string; properties?: Record<string, Schema>; definitions?: Record<string, Schema>; propertyNames?: Schema; additionalProperties?: Schema };
const schemaOf = (name: string) => JSON.parse(readFileSync(new URL(`../specs/schema/${name}.schema.json`, import.meta.url), 'utf8')) as Schema;
const stackSchema = schemaOf('stack');
const dc = stackSchema.definitions!.dataCenter.properties!;
const STACK_MAX = stackSchema.properties!.metadata.properties!.name.maxLength;
const DC_MAX = dc.name.maxLength;
const REGION = dc.aws.properties!.region;

/** Limits where the names end up. */
const EC2_TAG_VALUE = 256; // EC2 and Azure alike
const STS_SESSION_POLICY = 2048;
const FILE_NAME_BYTES = 255;
const AZURE_LINUX_VM_NAME = 64;
const AZURE_RESOURCE_NAME = 80;

/** The longest fleet name and member index the model accepts. */
const FLEET_MAX = Array.from({ length: 100 }, (_, n) => n + 1).filter((n) => isFleetName('a'.repeat(n))).at(-1)!;
const INDEX_MAX = Number('9'.repeat(Array.from({ length: 20 }, (_, n) => n + 1).filter((n) => parseVmAddress(`a/${'9'.repeat(n)}`) !== undefined).at(-1)!));

/** Characters a stack name may hold, the costly ones first: JSON escapes `"` and `\`; é is 2 UTF-8 bytes, 𝔸 4. */
const STACK_CHARS = ['"', '\\', 'é', '𝔸', 'a', '-', ' ', '漢'];

describe('the schemas bound the names that go into VM names, tags, session policies and files', () => {
  it('bounds them at all', () => {
    expect(STACK_MAX).toBe(40);
    expect(DC_MAX).toBe(40);
    expect(REGION.maxLength).toBe(20);
    expect(FLEET_MAX).toBe(40);
    expect(INDEX_MAX).toBe(999_999_999);
  });

  // A fleet's owner and labels, and the data center a DMZ client config names, had no limit (a 200,000-character
  // owner validated). Owner 64; labels as Kubernetes' (key 63, value 256); the config's data center as the stack's.
  it("bounds a fleet's owner and labels, and a DMZ client config's data center as the stack's", () => {
    const meta = schemaOf('fleet').properties!.metadata.properties!;
    expect(meta.owner.maxLength).toBe(64);
    expect(meta.labels.propertyNames?.maxLength).toBe(63);
    // An empty label key, and any number of labels, validated: a key is not empty, a fleet has at most 64 labels.
    expect(meta.labels.propertyNames?.minLength).toBe(1);
    expect(meta.labels.maxProperties).toBe(64);
    expect(meta.labels.additionalProperties?.maxLength).toBe(256);
    expect(schemaOf('dmz-client').properties!.metadata.properties!.dataCenter.maxLength).toBe(DC_MAX);
  });

  // owner-quota's limits name owners: any key was taken (an empty or 200,000-character one held no fleet to its limits).
  it("bounds the owners owner-quota's limits name as a fleet's owner", () => {
    const owner = schemaOf('fleet').properties!.metadata.properties!.owner;
    const limits = (ownerQuotaRule.configSchema as Schema).properties!.limits;
    expect(limits.propertyNames).toEqual({ minLength: owner.minLength, maxLength: owner.maxLength });
  });

  it("keeps the longest VM name within a tag value, whatever the stack's characters", () => {
    for (const c of STACK_CHARS) {
      const name = vmName(c.repeat(STACK_MAX!), 'f'.repeat(FLEET_MAX), INDEX_MAX);
      expect([...name].length).toBeLessThanOrEqual(EC2_TAG_VALUE);
    }
  });

  it("keeps an AWS data center's session policy within STS's limit, for the worst and for 2,000 generated stacks and regions", () => {
    const region = new RegExp(REGION.pattern!);
    const longestRegion = `us-${'a'.repeat(REGION.maxLength! - 5)}-1`;
    expect(region.test(longestRegion)).toBe(true);
    for (const c of STACK_CHARS) expect(sessionPolicy(c.repeat(STACK_MAX!), longestRegion).length).toBeLessThanOrEqual(STS_SESSION_POLICY);
    const rnd = seededRandom(20261207);
    for (let i = 0; i < 2000; i++) {
      const stack = Array.from({ length: rnd.between(1, STACK_MAX!) }, () => rnd.pick(STACK_CHARS)).join('');
      if (unseenProblem(stack)) continue; // refused by the loader (a space at either end)
      const r = `${'abcdefghijklmnopqrstuvwxyz'[rnd.int(26)]}${'xyz'[rnd.int(3)]}-${'n'.repeat(rnd.between(1, REGION.maxLength! - 7))}-${rnd.between(1, 9)}`;
      expect(region.test(r) && r.length <= REGION.maxLength!).toBe(true);
      expect(sessionPolicy(stack, r).length, `stack ${JSON.stringify(stack)}, region ${r}`).toBeLessThanOrEqual(STS_SESSION_POLICY);
    }
  });

  it("keeps a data center's state files within a file name's 255 bytes", () => {
    for (const c of ['é', '𝔸', 'a']) {
      const name = c.repeat(DC_MAX!);
      for (const file of [simStateFile('/s', name), simLogFile('/s', name), `/s/${name}`]) {
        expect(Buffer.byteLength(file.slice(file.lastIndexOf('/') + 1))).toBeLessThanOrEqual(FILE_NAME_BYTES);
      }
    }
  });

  // Azure's names derive from the VM id, not the VM's name: no stack name can make them too long.
  it("derives Azure's resource names from the VM id, within Azure's limits", () => {
    for (const id of [proposedVmId('plan', 'web/0'), crypto.randomUUID(), 'x'.repeat(500), 'Ünïcode id']) {
      const n = resourceNames(id);
      expect(n.vm.length).toBeLessThanOrEqual(AZURE_LINUX_VM_NAME);
      for (const r of [n.nic, n.osDisk, n.dataDisk]) expect(r.length).toBeLessThanOrEqual(AZURE_RESOURCE_NAME);
    }
  });
});
