// `fleet plan` in-process: exit codes, formats, --out, scope errors.
import { chmodSync, cpSync, existsSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planContentDigest, type PlanDocument } from '../engine/plan/index.ts';
import { openRecord } from '../engine/record/index.ts';
import { loadStack } from '../engine/spec/index.ts';
import { fixtureVms, seedFixture, seedProtection } from './fixtures/plan/harness.ts';
import { runCli } from './helpers/cli.ts';
import { schemaErrors } from './helpers/schemas.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'plan');

describe('fleet plan', () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  const stack = (name: string) => join(FIXTURES, name);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-plan-cli-'));
    env = { FLEET_RECORD_URL: `pglite://${join(tmp, 'record')}` };
    // One record for the stacks used here; each fixture is its own stack.
    const record = await openRecord(env.FLEET_RECORD_URL!);
    try {
      for (const name of ['02-no-change', '05-scale-down', '09-protect']) {
        const loaded = await loadStack(stack(name), { env });
        const vms = fixtureVms(join(stack(name), 'record.yaml'), loaded.stack!.name, loaded.fleets, loaded.pack!.images);
        await seedFixture(record, vms);
        // The fleets' protection as their specs say (the record of a stack applied before), as plan.e2e seeds it.
        await seedProtection(record, join(stack(name), 'record.yaml'), vms, loaded.fleets);
      }
    } finally {
      await record.close();
    }
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const cases: { name: string; args: string[]; code: number; stdout?: RegExp; stderr?: RegExp }[] = [
    { name: 'no changes: exit 0', args: ['--stack', stack('02-no-change')], code: 0, stdout: /No changes\. The record matches the specs\.\n$/ },
    { name: 'no changes with --detailed-exitcode: exit 0', args: ['--stack', stack('02-no-change'), '--detailed-exitcode'], code: 0 },
    { name: 'changes: exit 0', args: ['--stack', stack('05-scale-down')], code: 0, stdout: /Plan: 0 to create, 0 to transition, 0 to update, 0 to replace, 4 to delete\.\n$/ },
    { name: 'changes with --detailed-exitcode: exit 2', args: ['--stack', stack('05-scale-down'), '--detailed-exitcode'], code: 2 },
    {
      name: 'mandatory violation: exit 1, plan still printed',
      args: ['--stack', stack('09-protect'), '--allow-destroy', 'cache', '--detailed-exitcode'],
      code: 1,
      stdout: /mandatory protect at db\/0[\s\S]*Plan: 0 to create/,
      stderr: /error\[plan\.blocked\]: Plan blocked by policy/,
    },
    { name: 'allow-destroy for every protected fleet: exit 0', args: ['--stack', stack('09-protect'), '--allow-destroy', 'cache', '--allow-destroy', 'db'], code: 0 },
    { name: 'unknown --target is a diagnostic', args: ['--stack', stack('02-no-change'), '--target', 'nope'], code: 1, stderr: /error\[plan\.unknown-fleet\]: Unknown fleet\n {2}at nope\n/ },
    // A misspelt --allow-destroy was ignored: the plan came out blocked by the very protect violation it was meant to allow.
    { name: 'unknown --allow-destroy is a diagnostic', args: ['--stack', stack('09-protect'), '--allow-destroy', 'cache', '--allow-destroy', 'dbb'], code: 1, stderr: /error\[plan\.unknown-fleet\]: Unknown fleet\n {2}at dbb\n {2}--allow-destroy names no fleet named "dbb"/ },
    { name: '--allow-destroy takes fleets, not members', args: ['--stack', stack('09-protect'), '--allow-destroy', 'cache/0'], code: 1, stderr: /error\[plan\.unknown-fleet\]: Unknown fleet\n {2}at cache\/0\n/ },
    // Issue 17: a member address used to be refused as an unknown fleet.
    { name: '--target of a member plans that member', args: ['--stack', stack('09-protect'), '--target', 'db/0', '--allow-destroy', 'db'], code: 0, stdout: /Fleet db \(1 to replace\)[\s\S]*db\/0 replace in richmond \(wave 1\)[\s\S]*Plan: 0 to create, 0 to transition, 0 to update, 1 to replace, 0 to delete\.\n$/ },
    // It said "no fleet named db/0 is in the specs … or in its record", of a fleet that is in both.
    { name: '--exclude takes fleets, not members', args: ['--stack', stack('09-protect'), '--exclude', 'db/0'], code: 1, stderr: /error\[plan\.unknown-fleet\]: Unknown fleet\n {2}at db\/0\n {2}--exclude takes fleet names, and db\/0 is a member address: a member cannot be left out alone; --target the members to plan instead\.\n/ },
    { name: '--target of a member that does not exist', args: ['--stack', stack('09-protect'), '--target', 'db/7'], code: 1, stderr: /error\[plan\.unknown-member\]: Unknown member\n {2}at db\/7\n/ },
    { name: '--replace forces a new VM for a member that matches its spec', args: ['--stack', stack('09-protect'), '--target', 'cache', '--replace', 'cache/0', '--allow-destroy', 'cache'], code: 0, stdout: /cache\/0 replace in richmond \(wave 1\): replaced by --replace/ },
    { name: '--replace of no member', args: ['--stack', stack('09-protect'), '--replace', 'cache/9'], code: 1, stderr: /error\[plan\.unknown-member\][\s\S]*cache\/9 is not a live VM in the record/ },
    // Found by QA (qa-state): a --replace of a live VM the plan deletes (its index at or past count, or its fleet's
    // spec gone) was accepted and ignored: the plan deleted it, and said nothing of the --replace.
    { name: '--replace of a member past count', args: ['--stack', stack('05-scale-down'), '--replace', 'web/3'], code: 1, stderr: /error\[plan\.unknown-member\]: Unknown member\n {2}at web\/3\n {2}--replace web\/3: fleet web has count 2 \(members web\/0 to web\/1\), so the plan deletes web\/3/ },
    { name: '--replace of a member of a fleet with no spec', args: ['--stack', stack('05-scale-down'), '--replace', 'legacy/0'], code: 1, stderr: /error\[plan\.unknown-member\]: Unknown member\n {2}at legacy\/0\n {2}--replace legacy\/0: fleet legacy is in no spec of stack p05, so the plan deletes legacy\/0/ },
    { name: 'targeted plan', args: ['--stack', stack('05-scale-down'), '--target', 'legacy', '--format', 'json'], code: 0, stdout: /"fleets": \[\n {4}"legacy"\n {2}\]/ },
    { name: 'markdown', args: ['--stack', stack('05-scale-down'), '--format', 'markdown'], code: 0, stdout: /^<!-- fleet-plan stack=p05 -->\n## Plan for stack `p05`/ },
    { name: 'bad format', args: ['--stack', stack('02-no-change'), '--format', 'yaml'], code: 1, stderr: /yaml/ },
    { name: 'stack that does not load', args: ['--stack', join(FIXTURES, 'missing')], code: 1, stderr: /error\[spec\./ },
  ];
  it.each(cases)('$name', async ({ args, code, stdout, stderr }) => {
    const r = await runCli(['plan', ...args], { env });
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code });
    if (stdout) expect(r.stdout).toMatch(stdout);
    if (stderr) expect(r.stderr).toMatch(stderr);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.ts:\d+/);
  });

  it('--out writes the plan document; colour only on a TTY without NO_COLOR', async () => {
    const out = join(tmp, 'plan.json');
    const r = await runCli(['plan', '--stack', stack('05-scale-down'), '--out', out], { env, tty: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('\x1b[');
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    expect(doc).toMatchObject({ formatVersion: '2', stack: 'p05', summary: { delete: 4 } });
    const plain = await runCli(['plan', '--stack', stack('05-scale-down')], { env: { ...env, NO_COLOR: '1' }, tty: true });
    expect(plain.stdout).not.toContain('\x1b[');
  });

  it('--format json --out writes the plan once: the document to the file (0600), where it went and its summary to stdout', async () => {
    const out = join(tmp, 'saved.json');
    const r = await runCli(['plan', '--stack', stack('05-scale-down'), '--format', 'json', '--out', out, '--detailed-exitcode'], { env });
    expect(r.code, r.stderr).toBe(2);
    const printed = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(schemaErrors('plan-output', printed)).toEqual([]);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as { id: string; changes: unknown[] };
    expect(schemaErrors('plan', doc)).toEqual([]);
    expect(printed).toEqual({ planFile: out, formatVersion: '2', id: doc.id, stack: 'p05', summary: expect.objectContaining({ delete: 4 }), blocked: false, diagnostics: [] });
    expect(r.stdout).not.toContain('"changes"');
    expect(statSync(out).mode & 0o777).toBe(0o600);
  });

  // open(file, 'w', 0o600) sets the mode of a file it creates only: a plan
  // written over an existing world-readable file (an old plan, a file made
  // by `touch`) stayed 0644, where the README promises a saved plan is 0600.
  it('--out over an existing file makes it 0600 too', async () => {
    const out = join(tmp, 'over.json');
    writeFileSync(out, 'an old plan\n', { mode: 0o644 });
    chmodSync(out, 0o644);
    const r = await runCli(['plan', '--stack', stack('05-scale-down'), '--out', out], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ formatVersion: '2', stack: 'p05' });
  });

  // Over PRETTY_JSON_LIMIT changes the document is one line, written a piece at a time (engine/plan/json-text.ts).
  it('a plan of more than 1,000 changes: --out and --format json write JSON.stringify\'s text, and its seal verifies', async () => {
    const dir = join(tmp, 'big');
    cpSync(stack('01-create-nearest'), dir, { recursive: true });
    const stackFile = join(dir, 'stack.yaml');
    writeFileSync(
      stackFile,
      readFileSync(stackFile, 'utf8')
        .replace('path: ../../../../policies/default', `path: ${join(import.meta.dirname, '..', 'policies', 'default')}`)
        .replaceAll('capacity: { vms: 100 }', 'capacity: { vms: 1000 }'),
    );
    const fleet = (name: string, count: number, strategy: string) =>
      `apiVersion: fleet/v1\nkind: Fleet\nmetadata: { name: ${name}, owner: team-a }\nspec:\n  count: ${count}\n  image: ubuntu-22.04\n  size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }\n  placement: { strategy: ${strategy} }\n`;
    writeFileSync(join(dir, 'specs', 'fleets.yaml'), [fleet('spread', 600, 'spread'), fleet('near', 400, 'nearest'), fleet('pack', 300, 'pack')].join('---\n'));
    const out = join(tmp, 'big.json');
    const saved = await runCli(['plan', '--stack', dir, '--out', out, '--format', 'json'], { env });
    expect(saved.code, saved.stderr + saved.stdout).toBe(0);
    const text = readFileSync(out, 'utf8');
    const doc = JSON.parse(text) as PlanDocument;
    expect(doc.changes.length).toBeGreaterThan(1000);
    expect(text).toBe(`${JSON.stringify(doc)}\n`);
    expect(doc.seal!.digest).toBe(planContentDigest(doc));
    const printed = await runCli(['plan', '--stack', dir, '--format', 'json'], { env });
    expect(printed.code, printed.stderr).toBe(0);
    const envelope = JSON.parse(printed.stdout) as { plan: PlanDocument; diagnostics: unknown[] };
    expect(schemaErrors('plan-output', envelope)).toEqual([]);
    expect(printed.stdout.startsWith(`{\n"plan": ${JSON.stringify(envelope.plan)},\n"diagnostics": `)).toBe(true);
    expect(envelope.plan.changes.length).toBe(doc.changes.length);
  });

  // `--out specs/web.yaml` (a slip of tab completion) replaced the fleet's
  // spec with the plan's JSON, exit 0: the spec was gone, and the next
  // validate failed on "seal is not allowed". Every file the plan is made
  // from is refused, by identity (a symbolic or hard link to it too), and
  // nothing is written.
  describe('--out naming a file the plan is made from is refused, the file untouched', () => {
    /** A stack of its own per case (a copy of 05-scale-down and of the default pack, two spec files), and links to its files. */
    let n = 0;
    function inputsStack(): string {
      const dir = join(tmp, `inputs-${n++}`);
      cpSync(stack('05-scale-down'), dir, { recursive: true });
      cpSync(join(import.meta.dirname, '..', 'policies', 'default'), join(dir, 'pack'), { recursive: true });
      const stackFile = join(dir, 'stack.yaml');
      writeFileSync(stackFile, readFileSync(stackFile, 'utf8').replace('path: ../../../../policies/default', 'path: pack'));
      writeFileSync(join(dir, 'specs', 'other.yaml'), 'apiVersion: fleet/v1\nkind: Fleet\nmetadata: { name: other, owner: team-a }\nspec: { count: 1, image: ubuntu-22.04, size: { cpu: 1, memoryGiB: 1, diskGiB: 10 } }\n');
      symlinkSync(join(dir, 'specs', 'fleets.yaml'), join(dir, 'link-to-spec.yaml'));
      linkSync(join(dir, 'specs', 'other.yaml'), join(dir, 'hardlink-to-spec.yaml'));
      return dir;
    }
    const cases: { name: string; out: string; args?: string[]; what: RegExp }[] = [
      { name: 'a fleet spec file', out: 'specs/fleets.yaml', what: /is the fleet spec file/ },
      { name: 'the stack file', out: 'stack.yaml', what: /is the stack file/ },
      { name: "the pack's policy.yaml", out: 'pack/policy.yaml', what: /is the policy pack file/ },
      // Refused before the stack is read: --out is never written through a link to a file (apply-input.cli.test.ts).
      { name: 'a symbolic link to a spec file', out: 'link-to-spec.yaml', what: /is a symbolic link/ },
      { name: 'a hard link to a spec file', out: 'hardlink-to-spec.yaml', what: /is the fleet spec file/ },
      // --target alone parses only the files naming the fleet: the others are inputs all the same.
      { name: 'a spec file a --target plan does not parse', out: 'specs/other.yaml', args: ['--target', 'web'], what: /is the fleet spec file/ },
    ];
    it.each(cases)('$name', async ({ out, args, what }) => {
      const dir = inputsStack();
      const file = join(dir, out);
      const before = readFileSync(file, 'utf8');
      const r = await runCli(['plan', '--stack', dir, '--out', file, ...(args ?? [])], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error\[plan\.out-failed\]/);
      expect(r.stderr).toMatch(what);
      expect(r.stderr).toContain(`\n  at ${file}\n`);
      expect(r.stdout).toBe('');
      expect(readFileSync(file, 'utf8')).toBe(before);
    });

    // A new file the specs glob would read (`--out specs/new.yaml`) was written, and every later validate, plan and
    // apply read the plan as a spec (18 errors, none naming --out). Refused by the loader's own matcher; nothing left.
    it.each([
      { name: 'a new file the specs glob reads', out: 'specs/new.yaml', refused: true },
      { name: 'a new file beside the specs the glob does not read', out: 'specs/new.json', refused: false },
    ])('$name', async ({ out, refused }) => {
      const dir = inputsStack();
      const file = join(dir, out);
      const r = await runCli(['plan', '--stack', dir, '--out', file], { env });
      if (refused) {
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`error[plan.out-failed]: Cannot write the plan file\n  at ${file}\n  --out ${file} is where the stack's specs glob "specs/*.yaml" reads fleet specs`);
        expect(existsSync(file)).toBe(false);
      } else {
        expect(r.code).toBe(0);
        expect(JSON.parse(readFileSync(file, 'utf8')).formatVersion).toBe('2');
      }
      expect((await runCli(['validate', '--stack', dir], { env })).code).toBe(0);
    });
  });

  // `--out .fleet/record/PG_VERSION` (or any file of a PGlite record, wherever the record is) was written over: the
  // record no longer opened, for any command (record.corrupt). What fleet keeps of a stack is never --out's.
  describe('--out inside what fleet keeps of the stack is refused, nothing written there', () => {
    let n = 0;
    /** A copy of 05-scale-down whose record is `record` (its own .fleet/record when none), made by a first plan. */
    async function keptStack(record?: (dir: string) => string) {
      const dir = join(tmp, `kept-${n++}`);
      cpSync(stack('05-scale-down'), dir, { recursive: true });
      const stackFile = join(dir, 'stack.yaml');
      writeFileSync(stackFile, readFileSync(stackFile, 'utf8').replace('path: ../../../../policies/default', `path: ${join(import.meta.dirname, '..', 'policies', 'default')}`));
      const caseEnv = { FLEET_RECORD_URL: record ? `pglite://${record(dir)}` : '' };
      const first = await runCli(['plan', '--stack', dir], { env: caseEnv });
      expect(first.code, first.stderr).toBe(0);
      return { dir, env: caseEnv };
    }
    const cases: { name: string; record?: (dir: string) => string; out: (dir: string) => string; folder: (dir: string) => string }[] = [
      { name: "a file of the stack's own record", out: (d) => join(d, '.fleet', 'record', 'PG_VERSION'), folder: (d) => join(d, '.fleet') },
      { name: 'a new file in the state folder', out: (d) => join(d, '.fleet', 'plan.json'), folder: (d) => join(d, '.fleet') },
      { name: 'the state folder by way of ..', out: (d) => join(d, 'specs', '..', '.fleet', 'record', 'PG_VERSION'), folder: (d) => join(d, '.fleet') },
      { name: 'a file of a PGlite record outside the stack', record: (d) => `${d}-record`, out: (d) => join(`${d}-record`, 'PG_VERSION'), folder: (d) => `${d}-record` },
      { name: 'a file of that record through a link to its folder', record: (d) => `${d}-record`, out: (d) => (symlinkSync(`${d}-record`, join(d, 'rec')), join(d, 'rec', 'PG_VERSION')), folder: (d) => `${d}-record` },
    ];
    it.each(cases)('$name', async ({ record, out, folder }) => {
      const { dir, env: caseEnv } = await keptStack(record);
      const file = out(dir);
      const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
      const r = await runCli(['plan', '--stack', dir, '--out', file], { env: caseEnv });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `error[plan.out-failed]: Cannot write the plan file\n  at ${file}\n  --out ${file} is inside ${folder(dir)}, which holds what fleet keeps of the stack (the record, the simulated data centers, secrets and locks): a plan written there could replace a file of it. Write the plan to a file outside it (for example plan.json).\n`,
      );
      expect(existsSync(file) ? readFileSync(file, 'utf8') : undefined).toBe(before);
      const again = await runCli(['state', 'list', '--stack', dir], { env: caseEnv });
      expect(again.code, again.stderr).toBe(0);
    });
  });

  // An --out that cannot be written was found only after the whole plan was
  // made (and, on a deployed stack, sealed at the authority), and reported
  // as Node's message (`ENOENT: no such file or directory, open '…'`) with
  // no location and nothing to do. It is refused before the record is read.
  describe('--out that cannot be written is refused before the record is read, in words', () => {
    const cases: { name: string; out: () => string; says: (out: string) => string }[] = [
      {
        name: 'a missing folder',
        out: () => join(tmp, 'no', 'such', 'plan.json'),
        says: (out) => `cannot write ${out}: its folder ${join(tmp, 'no', 'such')} does not exist. Create the folder, or give --out a file in an existing one.`,
      },
      {
        name: 'a folder',
        out: () => tmp,
        says: (out) => `cannot write ${out}: it is a folder, not a file. Give --out a file name (for example ${join(out, 'plan.json')}).`,
      },
      {
        name: 'a path under a file',
        out: () => join(stack('02-no-change'), 'stack.yaml', 'plan.json'),
        says: (out) => `cannot write ${out}: ${join(stack('02-no-change'), 'stack.yaml')} is a file, not a folder. Give --out a file in an existing folder.`,
      },
    ];
    it.each(cases)('$name', async ({ out, says }) => {
      const record = join(tmp, `out-record-${Math.random().toString(36).slice(2)}`);
      const r = await runCli(['plan', '--stack', stack('02-no-change'), '--out', out()], { env: { FLEET_RECORD_URL: `pglite://${record}` } });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`error[plan.out-failed]: Cannot write the plan file\n  at ${out()}\n  ${says(out())}\n`);
      expect(existsSync(record)).toBe(false);
    });
  });

  it('--refresh is recorded in the plan', async () => {
    const r = await runCli(['plan', '--stack', stack('02-no-change'), '--refresh', '--format', 'json'], { env });
    const out = JSON.parse(r.stdout);
    expect(out.plan.options.refresh).toBe(true);
    expect(out.refresh).toMatchObject({ checked: expect.any(Number), drift: [] });
    expect(out.diagnostics).toEqual([]);
  });
});
