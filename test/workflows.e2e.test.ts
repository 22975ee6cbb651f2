// The GitHub Actions examples (examples/github-actions/) run end to end: their
// `run:` steps, in order, with their env, in a checkout-like workspace holding
// the embedded default stack (stacks/local, with the example specs' copies
// from test/fixtures/example-stack), against an in-memory GitHub. GitHub-only
// steps have local equivalents; test/helpers/workflow.ts lists them.
import { symlinkSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO } from './helpers/stack.ts';
import { parse } from 'yaml';
import { ACTIONS_BOT, FakeGitHub, copyTree, readWorkflow, runWorkflow, type RunOptions, type WorkflowRun } from './helpers/workflow.ts';

const EXAMPLES = join(REPO, 'examples', 'github-actions');

/** The machine's environment without FLEET_* settings, so only the workflows' env counts. */
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEET_') && k !== 'NO_COLOR'));

function step(run: WorkflowRun, name: string) {
  const s = run.steps.find((x) => x.name === name);
  if (!s) throw new Error(`no step ${name}: ${run.steps.map((x) => x.name).join(', ')}`);
  return s;
}

const explain = (run: WorkflowRun) => run.steps.map((s) => `${s.name}: ${s.skipped ? 'skipped' : s.code}\n${s.stderr.slice(-2000)}`).join('\n');

describe('examples/github-actions', () => {
  it('each workflow parses, and uses only actions the harness has a local equivalent for', () => {
    const known = ['actions/checkout', 'actions/setup-node', 'actions/upload-artifact', 'actions/download-artifact', 'actions/github-script'];
    for (const f of ['plan.yml', 'apply.yml', 'drift.yml']) {
      const wf = readWorkflow(join(EXAMPLES, f));
      const steps = Object.values(wf.jobs).flatMap((j) => j.steps);
      expect(steps.length).toBeGreaterThan(3);
      for (const s of steps) if (s.uses) expect(known, `${f}: ${s.uses}`).toContain(s.uses.split('@')[0]);
    }
  });

  describe('plan on pull request, apply on merge, scheduled drift check', () => {
    let ws: string;
    const gh = new FakeGitHub();
    const run = (file: string, runId: number, sha: string) => runWorkflow(join(EXAMPLES, file), { workspace: ws, github: gh, runId, sha, baseEnv } satisfies RunOptions);

    beforeAll(async () => {
      ws = await mkdtemp(join(tmpdir(), 'fleet-workflow-'));
      // A checkout of a repository holding dmzfleet and its stacks; node_modules is the repository's (the `install` step's stand-in).
      for (const d of ['bin', 'engine', 'protocol', 'providers', 'policies', 'specs/schema', 'specs/types', 'specs/validators']) copyTree(join(REPO, d), join(ws, d), (n) => n === '.fleet' || n === 'node_modules');
      copyTree(join(REPO, 'test/fixtures/example-stack/specs'), join(ws, 'specs/examples'));
      mkdirSync(join(ws, 'stacks/local'), { recursive: true });
      writeFileSync(join(ws, 'stacks/local/stack.yaml'), readFileSync(join(REPO, 'test/fixtures/example-stack/stack.yaml'), 'utf8').replace('specs: ["specs/*.yaml"]', 'specs: ["../../specs/examples/*.yaml"]').replace('path: ../../../policies/default', 'path: ../../policies/default'));
      writeFileSync(join(ws, 'package.json'), readFileSync(join(REPO, 'package.json')));
      symlinkSync(join(REPO, 'node_modules'), join(ws, 'node_modules'), 'dir');
    });
    afterAll(async () => {
      if (ws) await rm(ws, { recursive: true, force: true });
    });

    let firstPlanId = '';

    it('plan.yml: validates, posts the plan as one comment with its marker, keeps plan.json as an artifact', async () => {
      const r = await run('plan.yml', 1, 'feedface');
      expect(r.ok, explain(r)).toBe(true);
      expect(step(r, 'Validate').stdout).toContain('stacks/local: 3 fleets, 2 data centers');
      expect(step(r, 'Keep the saved plan for the apply on merge').skipped).toBe(false);
      expect(step(r, 'Fail on a blocked plan or an error').skipped).toBe(true);
      expect(gh.comments).toHaveLength(1);
      const body = gh.comments[0].body;
      expect(body.split('\n')[0]).toBe('<!-- fleet-plan stack=local -->');
      expect(body).toContain('To apply exactly this plan: `fleet apply plan.json`');
      const saved = JSON.parse(gh.artifacts.get('1/fleet-plan')!.get('plan.json')!.toString()) as { id: string; summary: { create: number } };
      expect(saved.summary.create).toBeGreaterThan(0);
      expect(body).toContain(`Plan \`${saved.id}\``);
      firstPlanId = saved.id;
    });

    it('plan.yml again (a new push): the same comment is updated, not a second one', async () => {
      const r = await run('plan.yml', 2, 'feedface');
      expect(r.ok, explain(r)).toBe(true);
      expect(gh.comments).toHaveLength(1);
      expect([gh.creates, gh.updates]).toEqual([1, 1]);
      const saved = JSON.parse(gh.artifacts.get('2/fleet-plan')!.get('plan.json')!.toString()) as { id: string };
      expect(saved.id).not.toBe(firstPlanId);
      expect(gh.comments[0].body).toContain(`Plan \`${saved.id}\``);
    });

    // The plan artifact comes from a pull-request run: the PR's own plan.yml
    // and code (policy modules, package.json scripts) ran there with the
    // record's credentials, so its seal proves little. apply.yml applies it
    // only when it is what the merged commit plans against the record now
    // (same changes, basis, options, rollouts): here the merged commit asks
    // for one more web member than the reviewed plan creates.
    it('apply.yml refuses a plan artifact that is not what the merged commit plans, and applies nothing', async () => {
      const spec = join(ws, 'specs/examples/web.yaml');
      const reviewed = readFileSync(spec, 'utf8');
      writeFileSync(spec, reviewed.replace('count: 3', 'count: 4'));
      try {
        const r = await run('apply.yml', 30, 'merge-0');
        expect(r.ok).toBe(false);
        const check = step(r, 'Check the reviewed plan is what the merged commit plans');
        expect(check.code, explain(r)).toBe(1);
        expect(check.stderr).toContain('is not what the merged commit plans');
        expect(step(r, 'Apply the reviewed plan').skipped).toBe(true);
      } finally {
        writeFileSync(spec, reviewed);
      }
    });

    it('apply.yml: applies exactly the reviewed plan (the last plan run of the merged PR), events on stdout', async () => {
      const r = await run('apply.yml', 3, 'merge-1');
      expect(r.ok, explain(r)).toBe(true);
      const lines = gh.artifacts.get('3/fleet-apply-events')!.get('apply-events.jsonl')!.toString().trim().split('\n');
      const events = lines.map((l) => JSON.parse(l) as { type: string; planId?: string; failed?: number; fleet?: string });
      for (const e of events) expect(schemaErrors('apply-event', e)).toEqual([]);
      const reviewed = JSON.parse(gh.artifacts.get('2/fleet-plan')!.get('plan.json')!.toString()) as { id: string };
      // The reviewed plan protects the new fleet web (its spec's protect: true, `fleetChanges`): written, and said, first.
      expect(events[0]).toMatchObject({ type: 'protect', fleet: 'web', protect: { from: false, to: true } });
      expect(events[1]).toMatchObject({ type: 'start', planId: reviewed.id });
      expect(events.at(-1)).toMatchObject({ type: 'summary', planId: reviewed.id, failed: 0 });
    });

    it('drift.yml: no drift after the apply, exit 0, the report in the run summary', async () => {
      const r = await run('drift.yml', 4, 'main-1');
      expect(r.ok, explain(r)).toBe(true);
      expect(r.summary).toMatch(/Drift check: \d+ VMs checked, 0 differences \(nothing written to the record\)\./);
      expect(step(r, 'Keep the drift report').skipped).toBe(true);
    });

    it('plan.yml on the next pull request: no changes, the comment says so, no plan artifact', async () => {
      const r = await run('plan.yml', 5, 'next');
      expect(r.ok, explain(r)).toBe(true);
      expect(step(r, 'Keep the saved plan for the apply on merge').skipped).toBe(true);
      expect(gh.comments).toHaveLength(1);
      expect(gh.comments[0].body).toContain('No changes. The record matches the specs.');
      expect(gh.comments[0].body).toContain('Nothing to apply.');
    });

    // Anyone can comment on a pull request. A comment that starts with the
    // marker but is not the workflow's own must not be the one edited: the
    // plan would show under that person's name, and they could edit it after.
    it('plan.yml edits only its own comment, not one by someone else that starts with the marker', async () => {
      const marker = gh.comments[0].body.split('\n', 1)[0];
      const forged = `${marker}\n## Plan for stack \`local\`\n\n**No changes.** (forged)`;
      gh.comments.unshift({ id: 1, body: forged, user: { login: 'mallory', type: 'User' } });
      const r = await run('plan.yml', 7, 'next-2');
      expect(r.ok, explain(r)).toBe(true);
      expect(gh.comments.find((c) => c.id === 1)!.body).toBe(forged);
      const mine = gh.comments.filter((c) => c.user.login === ACTIONS_BOT.login);
      expect(mine).toHaveLength(1);
      expect(mine[0].body).toContain('Nothing to apply.');
      gh.comments.shift();
    });

    // `fleet plan` killed (out of memory: 137) is neither 0, 1 nor 2: the job
    // went green with no artifact and a truncated plan.md as the comment.
    it('plan.yml fails, posting nothing, when fleet plan stops with another exit code (killed)', async () => {
      const preload = join(ws, 'kill-plan.cjs');
      writeFileSync(preload, "if (process.argv.slice(2).includes('plan')) process.kill(process.pid, 'SIGKILL');\n");
      const before = gh.comments.map((c) => c.body);
      const r = await runWorkflow(join(EXAMPLES, 'plan.yml'), { workspace: ws, github: gh, runId: 8, sha: 'killed', baseEnv: { ...baseEnv, NODE_OPTIONS: `--require ${preload}` } });
      expect(r.ok).toBe(false);
      expect(step(r, 'Validate').code).toBe(0);
      expect(step(r, 'Plan').stderr).toContain('fleet plan stopped with exit code 137');
      expect(gh.comments.map((c) => c.body)).toEqual(before);
      expect(gh.artifacts.has('8/fleet-plan')).toBe(false);
    });

    it('drift.yml fails (exit 2) when a data center drifted, keeps the report', async () => {
      // Power a VM off behind the record's back.
      const simDir = join(ws, 'stacks/local/.fleet/sim');
      const file = join(simDir, 'miami', 'sim-miami.json');
      const sim = JSON.parse(readFileSync(file, 'utf8')) as { vms: { power: string; agent: string }[] };
      Object.assign(sim.vms[0], { power: 'off', agent: 'none' });
      writeFileSync(file, JSON.stringify(sim));
      const r = await run('drift.yml', 6, 'main-2');
      expect(r.ok).toBe(false);
      expect(step(r, 'Check for drift').code).toBe(2);
      expect(step(r, 'Keep the drift report').skipped).toBe(false);
      // Powered off behind the record's back: two edges from Running, which a refresh would record.
      expect(gh.artifacts.get('6/fleet-drift')!.get('drift.txt')!.toString()).toMatch(/^edge +miami .*2 edges from Running/m);
    });

    // A VM the record does not know is reported with the name it has in the
    // cloud, which whoever made it chose: in the job's log and in the run
    // summary (markdown) it stays text.
    it('drift.yml: an unknown VM\'s cloud name stays text in the log and the run summary', async () => {
      const file = join(ws, 'stacks/local/.fleet/sim', 'miami', 'sim-miami.json');
      const sim = JSON.parse(readFileSync(file, 'utf8')) as { vms: { vmId: string; cloudId: string; name: string }[] };
      const name = 'evil\u001b[2J\n```\n## forged <img src=x>';
      sim.vms.push({ ...sim.vms[0], vmId: 'vm-stranger', cloudId: 'sim-stranger', name });
      writeFileSync(file, JSON.stringify(sim));
      const r = await run('drift.yml', 9, 'main-3');
      expect(step(r, 'Check for drift').code).toBe(2);
      const log = step(r, 'Check for drift').stdout;
      expect(log).toContain('evil\\u001B[2J\\u000A```\\u000A## forged');
      // eslint-disable-next-line no-control-regex -- control characters are what must not be there
      expect(log).not.toMatch(/\u001b/);
      expect(r.summary).not.toMatch(/^## forged/m);
      expect(r.summary).not.toContain('<img');
      expect(r.summary).toContain('&lt;img src=x>');
    });
  });
});

// What the workflow files must keep, read from the YAML (and, for what the
// YAML parser drops such as comments, from the text).
describe('examples/github-actions: security properties', () => {
  const FILES = ['plan.yml', 'apply.yml', 'drift.yml'] as const;
  const text = (f: string) => readFileSync(join(EXAMPLES, f), 'utf8');
  interface Step { name?: string; id?: string; uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> }
  interface Wf { on: Record<string, unknown>; permissions?: Record<string, string> | string; env?: Record<string, string>; jobs: Record<string, { permissions?: unknown; env?: Record<string, string>; steps: Step[] }> }
  const wf = (f: string) => parse(text(f)) as Wf;
  const steps = (f: string) => Object.values(wf(f).jobs).flatMap((j) => j.steps);
  /** The least each workflow needs: plan comments on the PR; apply finds the PR and its plan run and downloads the artifact. */
  const ALLOWED: Record<(typeof FILES)[number], Record<string, string>> = {
    'plan.yml': { contents: 'read', 'pull-requests': 'write' },
    'apply.yml': { contents: 'read', actions: 'read', 'pull-requests': 'read' },
    'drift.yml': { contents: 'read' },
  };

  it.each(FILES)('%s: no trigger that runs a fork\'s code with the base repository\'s secrets or a write token', (f) => {
    expect(Object.keys(wf(f).on)).not.toContain('pull_request_target');
    expect(Object.keys(wf(f).on)).not.toContain('workflow_run');
  });

  it.each(FILES)('%s: least-privilege permissions, declared at the top, none added by a job', (f) => {
    expect(wf(f).permissions).toEqual(ALLOWED[f]);
    for (const job of Object.values(wf(f).jobs)) expect(job.permissions).toBeUndefined();
  });

  it.each(FILES)('%s: every action pinned to a full commit SHA, with its version in a comment', (f) => {
    const uses = text(f).split('\n').filter((l) => /^\s*-?\s*uses:/.test(l));
    expect(uses.length).toBeGreaterThan(0);
    for (const l of uses) expect(l, l).toMatch(/uses: [\w-]+\/[\w-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
  });

  // `${{ github.head_ref }}` or a PR title pasted into a script runs as code.
  it.each(FILES)('%s: no ${{ }} expression inside a run: script or a github-script script (values come in through env:)', (f) => {
    for (const s of steps(f)) {
      expect(s.run ?? '', s.name).not.toContain('${{');
      expect(String(s.with?.script ?? ''), s.name).not.toContain('${{');
    }
  });

  // The PR's code runs in these jobs (npm ci's scripts, the pack's rule modules in validate and plan).
  it.each(FILES)('%s: secrets only in the env of the steps that need the record, never workflow- or job-wide', (f) => {
    expect(JSON.stringify(wf(f).env ?? {})).not.toContain('secrets.');
    for (const job of Object.values(wf(f).jobs)) expect(JSON.stringify(job.env ?? {})).not.toContain('secrets.');
    for (const s of steps(f)) {
      if (!JSON.stringify(s).includes('secrets.')) continue;
      expect(s.run, `${s.name}: a secret only for a fleet command`).toMatch(/npx fleet (plan|apply|refresh)/);
    }
  });

  // Two pushes in a row: without it the older run could finish last and its
  // plan replace the newer one in the comment reviewers approve.
  it('plan.yml: one run per pull request at a time, a newer push cancelling the older run', () => {
    const c = (wf('plan.yml') as unknown as { concurrency?: { group?: string; 'cancel-in-progress'?: boolean } }).concurrency;
    expect(c?.group).toMatch(/\$\{\{ github\.event\.pull_request\.number \}\}/);
    expect(c?.['cancel-in-progress']).toBe(true);
  });

  it.each(FILES)('%s: checkout leaves no token in .git/config for later steps', (f) => {
    const checkouts = steps(f).filter((s) => s.uses?.startsWith('actions/checkout@'));
    expect(checkouts).toHaveLength(1);
    expect(checkouts[0].with?.['persist-credentials']).toBe(false);
  });
});

