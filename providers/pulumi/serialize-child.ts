// Test support: serializes providers the way a Pulumi program does
// (pulumi.dynamic.Resource stores serializeFunction(() => provider) in the
// state), in a process that runs the project's TypeScript under tsx, as a
// program under `pulumi up` runs. Not inside vitest: its module transform
// turns each import into a module object, which Pulumi's serializer captures
// and cannot write back out.
//
// stdin: { "<key>": ProviderSpec, ... } (JSON); stdout: { "<key>": "<serialized text>", ... }
import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { DataCenterProvider, type DataCenterProviderOptions } from '../provider.ts';
import { FleetProvider } from './fleet.ts';
import type { FleetStack } from './stack.ts';
import { VmProvider } from './vm.ts';

export type ProviderSpec = { kind: 'dc' | 'vm'; options: DataCenterProviderOptions } | { kind: 'fleet'; stack: FleetStack };

function build(s: ProviderSpec): object {
  if (s.kind === 'fleet') return new FleetProvider(s.stack);
  return s.kind === 'vm' ? new VmProvider(s.options) : new DataCenterProvider(s.options);
}

const specs = JSON.parse(readFileSync(0, 'utf8')) as Record<string, ProviderSpec>;
const out: Record<string, string> = {};
for (const [key, spec] of Object.entries(specs)) {
  const provider = build(spec);
  out[key] = (await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true })).text;
}
process.stdout.write(JSON.stringify(out));
