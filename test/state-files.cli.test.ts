// The files an embedded stack keeps under .fleet/ beside its record: the authority's secret (disk keys derive from
// it) and each simulated data center's state folder. One this user cannot read or create (a stack folder another
// user made, a folder where a file should be) stopped `fleet apply` with 'error[cli.internal]: Internal error
// EACCES: permission denied, open …/.fleet/authority.secret' (or 'mkdir …/.fleet/sim/miami'). The suite runs as
// root, which reads and writes every file, so the cases here put a folder where a file should be and a file where a
// folder should be; the permission errors take the same paths (checked by hand as nobody).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fleetYaml, useTempStack } from './helpers/stack.ts';

describe('fleet apply: a state file of .fleet/ it cannot use', () => {
  const stack = useTempStack();

  it.each([
    {
      name: 'the authority secret is a folder',
      make: (fleet: string) => mkdir(join(fleet, 'authority.secret'), { recursive: true }),
      undo: (fleet: string) => rm(join(fleet, 'authority.secret'), { recursive: true }),
      code: 'apply.secret-file',
      says: "cannot read the authority's secret: it is a folder, not a file (EISDIR)",
    },
    {
      name: 'the sim state folder is a file',
      make: async (fleet: string) => {
        await mkdir(fleet, { recursive: true });
        await writeFile(join(fleet, 'sim'), 'x');
      },
      undo: (fleet: string) => rm(join(fleet, 'sim')),
      code: 'apply.sim-state',
      says: 'cannot create the state folder of the simulated data center',
    },
  ])('$name: a located diagnostic, exit 1, nothing applied; once fixed, the apply runs', async ({ make, undo, code, says }) => {
    await stack.spec('web', fleetYaml('web', { count: 1 }));
    const fleetDir = join(stack.dir, '.fleet');
    await rm(fleetDir, { recursive: true, force: true });
    await make(fleetDir);
    const r = await stack.fleet('apply', '--yes');
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('cli.internal');
    expect(r.stderr).toContain(`error[${code}]`);
    expect(r.stderr).toContain(says);
    const list = await stack.fleet('state', 'list');
    expect(list.stdout).toContain('0 VMs');
    await undo(fleetDir);
    const again = await stack.fleet('apply', '--yes');
    expect(again.code).toBe(0);
  });
});
