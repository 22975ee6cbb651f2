// The folder layering lint rule (eslint.config.js, LAYERS) fires: a table of
// imports as they would appear in a file of each folder, linted with the
// repository's own configuration.
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function restricted(file: string, from: string): Promise<string[]> {
  const [r] = await eslint.lintText(`import { x } from '${from}';\nexport const y = x;\n`, { filePath: `${root}${file}` });
  return r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('folder layers (no-restricted-imports)', () => {
  it.each([
    // A data-model folder importing the CLI, apply, a service or a provider.
    { file: 'engine/plan/new.ts', from: '../cli/main.ts', fires: true },
    { file: 'engine/plan/render/new.ts', from: '../../apply/index.ts', fires: true },
    { file: 'engine/policy/new.ts', from: '../authority/index.ts', fires: true },
    { file: 'engine/spec/new.ts', from: '../../providers/client.ts', fires: true },
    { file: 'engine/diags/new.ts', from: '../model/index.ts', fires: true },
    { file: 'engine/model/new.ts', from: '../record/types.ts', fires: true },
    { file: 'engine/policy/new.ts', from: '../model/loaded.ts', fires: false },
    { file: 'engine/record/new.ts', from: '../apply/index.ts', fires: true },
    // A cross-folder cycle: each half of plan <-> policy, policy <-> spec and record <-> plan; the lower half fires.
    { file: 'engine/policy/new.ts', from: '../plan/types.ts', fires: true },
    { file: 'engine/plan/new.ts', from: '../policy/types.ts', fires: false },
    { file: 'engine/record/new.ts', from: '../plan/types.ts', fires: true },
    { file: 'engine/plan/new.ts', from: '../record/types.ts', fires: false },
    { file: 'engine/policy/rules/new.ts', from: '../../spec/types.ts', fires: true },
    { file: 'engine/spec/new.ts', from: '../policy/index.ts', fires: false },
    // A service importing the providers (authority <-> providers), apply reaching a DMZ client.
    { file: 'engine/authority/new.ts', from: '../../providers/protocol.ts', fires: true },
    { file: 'providers/dmz-client/new.ts', from: '../../engine/authority/index.ts', fires: false },
    { file: 'providers/new.ts', from: '../engine/apply/index.ts', fires: true },
    { file: 'engine/apply/new.ts', from: '../../providers/client.ts', fires: true },
    { file: 'engine/apply/new.ts', from: '../../providers/dmz-client/index.ts', fires: true },
    { file: 'engine/apply/new.ts', from: '../../providers/provider.ts', fires: false },
    { file: 'engine/cli/commands/new.ts', from: '../../../providers/client.ts', fires: false },
    // Anything may import the data model.
    { file: 'engine/record/new.ts', from: '../model/index.ts', fires: false },
    { file: 'providers/drivers/sim/new.ts', from: '../../../engine/model/index.ts', fires: false },
  ])('$file importing $from: fires $fires', async ({ file, from, fires }) => {
    const got = await restricted(file, from);
    expect(got.length > 0).toBe(fires);
  });

  it('says which layer is broken', async () => {
    const [m] = await restricted('engine/policy/new.ts', '../plan/types.ts');
    expect(m).toContain('engine/policy is below engine/plan (eslint.config.js, LAYERS): it may not import it.');
  });
});
