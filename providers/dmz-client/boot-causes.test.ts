// Which denial's cause the failed step of a boot names (boot-causes.ts): the
// VM's own, never words a caller guessing at the VM's id chose; kept in the
// state folder across a restart, with no token in it.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BootCauses, SAVE_DELAY_MS, bootCausesFile } from './boot-causes.ts';

const VM = '7b0c2a9e-3f4d-4c1e-9a55-0d6f1e2b3c4d';
const CLOUD = 'sim-miami-0001';
const IMAGE = 'img-ubuntu';
const vm = (bootToken: string, over: { cloudId?: string; image?: string } = {}) => ({ vmId: VM, cloudId: CLOUD, image: IMAGE, bootToken, ...over });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dmzfleet-boot-causes-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('BootCauses', () => {
  const cases: { name: string; events: (c: BootCauses) => void; why: string }[] = [
    { name: 'no boot of the VM here: nothing kept', events: (c) => c.denied(vm('t1'), 'own'), why: '' },
    { name: 'its token denied', events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('t1'), 'own')), why: "; the authority's reason: own" },
    {
      name: "a guess with the VM's cloud id and image does not hide its token's cause",
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('t1'), 'own'), c.denied(vm('guess'), 'guessed')),
      why: "; the authority's reason: own",
    },
    {
      name: 'another token with its cloud id and image, nothing of its own',
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('forged'), 'other')),
      why: "; it did not present the boot token it was booted with: a boot for it with another token was denied; the authority's reason: other",
    },
    {
      name: 'another token claiming another cloud id or image: not kept',
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('g1', { cloudId: 'i-guess' }), 'x'), c.denied(vm('g2', { image: 'img-guess' }), 'y')),
      why: '',
    },
    {
      name: 'an earlier token of it, replaced by a boot approved again',
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.booting(VM, 't2', CLOUD, IMAGE), c.denied(vm('t1'), 'earlier')),
      why: "; the authority's reason (for the boot token of an earlier boot of it, replaced since): earlier",
    },
    {
      name: "an earlier token's denial does not hide the latest's",
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.booting(VM, 't2', CLOUD, IMAGE), c.denied(vm('t2'), 'latest'), c.denied(vm('t1'), 'earlier')),
      why: "; the authority's reason: latest",
    },
    {
      name: "another token's denial before a new boot is not the new boot's",
      events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('forged'), 'other'), c.booting(VM, 't2', CLOUD, IMAGE)),
      why: '',
    },
    { name: 'the wait is over', events: (c) => (c.booting(VM, 't1', CLOUD, IMAGE), c.denied(vm('t1'), 'own'), c.done(VM)), why: '' },
  ];
  it.each(cases)('$name', ({ events, why }) => {
    const c = BootCauses.open(undefined);
    events(c);
    expect(c.why(VM)).toBe(why);
  });

  it('a caller without one of the VM\'s tokens never puts its words in the step (generated sequences)', () => {
    // Seeded draws: boots of the VM, its tokens denied, and guesses (any token but its own, any cloud id and image).
    let seed = 7;
    // mulberry32
    const rand = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    for (let round = 0; round < 500; round++) {
      const c = BootCauses.open(undefined);
      const mine: string[] = [];
      const deniedMine = new Set<string>();
      for (let k = 0; k < 12; k++) {
        const draw = rand(4);
        if (draw === 0 || mine.length === 0) {
          mine.push(`t${round}-${k}`);
          c.booting(VM, mine.at(-1)!, CLOUD, IMAGE);
        } else if (draw === 1) {
          const token = mine[rand(mine.length)];
          deniedMine.add(token);
          c.denied(vm(token), `own ${token}`);
        } else {
          // A guess: its claimed cloud id or image is its own words unless it copies the VM's.
          const cloudId = rand(2) ? CLOUD : `GUESS-cloud-${k}`;
          const image = rand(2) ? IMAGE : `GUESS-image-${k}`;
          c.denied(vm(`guess-${k}`, { cloudId, image }), `denied: cloud id ${cloudId}, image ${image}`);
        }
      }
      const why = c.why(VM);
      expect(why).not.toContain('GUESS');
      // One of the tokens it still keeps (the last four) denied: that cause, never a guess's in its place.
      if (mine.slice(-4).some((t) => deniedMine.has(t))) expect(why).toMatch(/^; the authority's reason( \(for the boot token of an earlier boot of it, replaced since\))?: own t/);
      // None: no cause of one of its tokens (a token dropped from the last four is another token by now).
      else expect(why).not.toMatch(/^; the authority's reason/);
    }
  });

  it('is kept in the state folder across a restart (written at the latest at close), 0600, with no token in it; an unreadable file is started over', async () => {
    const c = BootCauses.open(dir);
    c.booting(VM, 'secret-boot-token', CLOUD, IMAGE);
    c.denied(vm('secret-boot-token'), 'own');
    // Not written at each change (every boot makes two): within SAVE_DELAY_MS, or at the client's close.
    const file = bootCausesFile(dir);
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
    c.flush();
    const again = BootCauses.open(dir);
    expect(again.why(VM)).toBe("; the authority's reason: own");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain('secret-boot-token');
    again.done(VM);
    // Written by its timer, with no flush.
    await vi.waitFor(async () => expect(BootCauses.open(dir).why(VM)).toBe(''), { timeout: 10 * SAVE_DELAY_MS, interval: SAVE_DELAY_MS / 4 });

    await writeFile(file, '{"version": 1, "vms": ');
    const fresh = BootCauses.open(dir);
    expect(fresh.why(VM)).toBe('');
    fresh.booting(VM, 't1', CLOUD, IMAGE);
    fresh.denied(vm('t1'), 'after');
    fresh.flush();
    expect(BootCauses.open(dir).why(VM)).toBe("; the authority's reason: after");
  });

  it('a file it cannot write does not end the process: the causes stay in memory', async () => {
    const c = BootCauses.open(join(dir, 'not-a-folder'));
    await writeFile(join(dir, 'not-a-folder'), 'a file where the folder should be');
    c.booting(VM, 't1', CLOUD, IMAGE);
    c.denied(vm('t1'), 'kept');
    c.flush();
    expect(c.why(VM)).toBe("; the authority's reason: kept");
  });
});
