// Runs a GitHub Actions workflow file locally, so the examples under
// examples/github-actions/ are executed by the test suite and cannot rot.
//
// What runs as written: every `run:` step, in order, with bash -eo pipefail
// (GitHub's default shell), with the workflow's, job's and step's `env:`
// (expressions evaluated), GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files and
// `if:` conditions over step outputs and success()/failure()/always().
//
// What is substituted, because it exists only on GitHub:
//
// | step                          | local equivalent                                                        |
// | ----------------------------- | ----------------------------------------------------------------------- |
// | uses: actions/checkout        | nothing: the workspace already holds the checkout                       |
// | uses: actions/setup-node      | nothing: the machine's Node runs the steps                              |
// | uses: actions/upload-artifact | copies `with.path` into the run's artifact store under `with.name`      |
// | uses: actions/download-artifact | copies the stored artifact `with.name` into the workspace             |
// | uses: actions/github-script   | runs `with.script` as written, with `github` an in-memory GitHub (PR comments, merged PRs, workflow runs), `context`, `core` and `require` |
// | the step with `id: install`   | replaced by the workspace's node_modules, linked to the repository's (npm ci needs the network) |
//
// Expressions: `${{ secrets.X }}` (from `secrets`, else empty), `${{ github.token }}`,
// `${{ github.* }}` of the fake context, `${{ steps.ID.outputs.NAME }}`; anything else fails the test.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import type * as NodeFs from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { parse } from 'yaml';

interface Step {
  id?: string;
  name?: string;
  if?: string;
  uses?: string;
  run?: string;
  with?: Record<string, string | number | boolean>;
  env?: Record<string, string>;
}

interface Workflow {
  env?: Record<string, string>;
  jobs: Record<string, { env?: Record<string, string>; steps: Step[] }>;
}

export interface FakeComment {
  id: number;
  body: string;
  /** Who wrote it: the workflow's comments are github-actions[bot]'s (a Bot), anyone may write others. */
  user: { login: string; type: 'Bot' | 'User' };
}

/** The author of every comment a workflow's GITHUB_TOKEN writes. */
export const ACTIONS_BOT = { login: 'github-actions[bot]', type: 'Bot' } as const;

/** The part of GitHub the example workflows talk to, in memory. */
export class FakeGitHub {
  comments: FakeComment[] = [];
  creates = 0;
  updates = 0;
  /** Successful plan runs by head commit. */
  planRuns = new Map<string, number>();
  /** Artifacts by name: file name -> content. */
  artifacts = new Map<string, Map<string, Buffer>>();
  readonly pr = { number: 7, head: { sha: 'feedface' }, merged_at: '2026-01-01T00:00:00Z' };

  readonly rest = {
    issues: {
      listComments: async () => ({ data: this.comments.map((c) => ({ ...c, user: { ...c.user } })) }),
      createComment: async (p: { body: string }) => {
        this.creates++;
        this.comments.push({ id: 1000 + this.comments.length, body: p.body, user: { ...ACTIONS_BOT } });
        return { data: {} };
      },
      updateComment: async (p: { comment_id: number; body: string }) => {
        this.updates++;
        const c = this.comments.find((x) => x.id === p.comment_id);
        if (!c) throw new Error(`no comment ${p.comment_id}`);
        c.body = p.body;
        return { data: {} };
      },
    },
    repos: {
      listPullRequestsAssociatedWithCommit: async () => ({ data: [this.pr] }),
    },
    actions: {
      listWorkflowRuns: async (p: { head_sha: string }) => {
        const id = this.planRuns.get(p.head_sha);
        return { data: { workflow_runs: id === undefined ? [] : [{ id }] } };
      },
    },
  };

  async paginate<T>(fn: (p: unknown) => Promise<{ data: T[] }>, params: unknown): Promise<T[]> {
    return (await fn(params)).data;
  }
}

export interface StepResult {
  name: string;
  skipped: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

export interface WorkflowRun {
  ok: boolean;
  steps: StepResult[];
  summary: string;
}

export interface RunOptions {
  workspace: string;
  github: FakeGitHub;
  /** The run's id: its uploaded artifacts are found by it. */
  runId: number;
  /** The commit: plan runs are registered under it, apply finds them by the merged PR's head. */
  sha: string;
  secrets?: Record<string, string>;
  /** Extra environment for every step (PATH, HOME…); the workflow's env wins over it. */
  baseEnv: NodeJS.ProcessEnv;
}

export function readWorkflow(file: string): Workflow {
  return parse(readFileSync(file, 'utf8')) as Workflow;
}

export async function runWorkflow(file: string, opts: RunOptions): Promise<WorkflowRun> {
  const wf = readWorkflow(file);
  const jobs = Object.values(wf.jobs);
  if (jobs.length !== 1) throw new Error(`${basename(file)}: the harness runs workflows of one job`);
  const job = jobs[0];
  const outputs = new Map<string, Record<string, string>>();
  const gh = opts.github;
  const context = { repo: { owner: 'acme', repo: 'fleets' }, issue: { number: gh.pr.number }, sha: opts.sha, runId: opts.runId };

  const expr = (text: string): string =>
    text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, e: string) => {
      let m: RegExpMatchArray | null;
      if ((m = e.match(/^secrets\.(\w+)$/))) return opts.secrets?.[m[1]] ?? '';
      if (e === 'github.token') return 'fake-token';
      if ((m = e.match(/^steps\.([\w-]+)\.outputs\.([\w-]+)$/))) return outputs.get(m[1])?.[m[2]] ?? '';
      throw new Error(`${basename(file)}: the harness does not evaluate \${{ ${e} }}`);
    });
  const envOf = (...layers: (Record<string, string> | undefined)[]): Record<string, string> =>
    Object.fromEntries(layers.flatMap((l) => Object.entries(l ?? {})).map(([k, v]) => [k, expr(String(v))]));

  let failed = false;
  const cond = (c: string | undefined): boolean => {
    if (c === undefined) return !failed;
    const t = c.trim();
    if (t === 'always()') return true;
    if (t === 'failure()') return failed;
    if (t === 'success()') return !failed;
    const m = t.match(/^steps\.([\w-]+)\.outputs\.([\w-]+)\s*(==|!=)\s*'([^']*)'$/);
    if (!m) throw new Error(`${basename(file)}: the harness does not evaluate if: ${c}`);
    const v = outputs.get(m[1])?.[m[2]] ?? '';
    return !failed && (m[3] === '==' ? v === m[4] : v !== m[4]);
  };

  const results: StepResult[] = [];
  const summaryFile = join(opts.workspace, `.gh-summary-${opts.runId}`);
  writeFileSync(summaryFile, '');
  for (const [i, step] of job.steps.entries()) {
    const name = step.name ?? step.uses ?? step.run?.split('\n')[0] ?? `step ${i}`;
    if (!cond(step.if)) {
      results.push({ name, skipped: true, code: 0, stdout: '', stderr: '' });
      continue;
    }
    const env = { ...opts.baseEnv, ...envOf(wf.env, job.env, step.env) };
    let r: StepResult;
    if (step.id === 'install') {
      // npm ci needs the network: the workspace's node_modules is the repository's (see the header).
      r = { name, skipped: false, code: existsSync(join(opts.workspace, 'node_modules')) ? 0 : 1, stdout: '', stderr: '' };
    } else if (step.run !== undefined) {
      const outFile = join(opts.workspace, `.gh-output-${opts.runId}-${i}`);
      writeFileSync(outFile, '');
      const p = await bash(expr(step.run), opts.workspace, { ...env, GITHUB_OUTPUT: outFile, GITHUB_STEP_SUMMARY: summaryFile, GITHUB_ACTIONS: 'true', CI: 'true' });
      r = { name, skipped: false, ...p };
      if (step.id) outputs.set(step.id, parseOutputs(readFileSync(outFile, 'utf8')));
    } else {
      r = { name, skipped: false, ...(await uses(step, opts, context, expr, (k, v) => outputs.set(step.id ?? '', { ...outputs.get(step.id ?? ''), [k]: v }))) };
    }
    results.push(r);
    if (r.code !== 0) failed = true;
  }
  if (!failed && basename(file) === 'plan.yml') gh.planRuns.set(opts.sha, opts.runId);
  return { ok: !failed, steps: results, summary: readFileSync(summaryFile, 'utf8') };
}

/** Runs a step's script as GitHub's default shell does (bash -eo pipefail), without blocking the test's event loop. */
function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const heredoc = lines[i].match(/^([\w-]+)<<(.+)$/);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2], i + 1);
      out[heredoc[1]] = lines.slice(i + 1, end).join('\n');
      i = end;
    } else if (lines[i].includes('=')) {
      const k = lines[i].slice(0, lines[i].indexOf('='));
      out[k] = lines[i].slice(k.length + 1);
    }
  }
  return out;
}

/** The local equivalent of a `uses:` step (see the table at the top). */
async function uses(
  step: Step,
  opts: RunOptions,
  context: object,
  expr: (s: string) => string,
  setOutput: (k: string, v: string) => void,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const action = step.uses!.split('@')[0];
  const w = Object.fromEntries(Object.entries(step.with ?? {}).map(([k, v]) => [k, expr(String(v))]));
  const gh = opts.github;
  switch (action) {
    case 'actions/checkout':
    case 'actions/setup-node':
      return { code: 0, stdout: '', stderr: '' };
    case 'actions/upload-artifact': {
      const files = new Map<string, Buffer>();
      for (const p of w.path.split('\n').filter(Boolean)) {
        const abs = join(opts.workspace, p.trim());
        if (existsSync(abs)) files.set(basename(abs), readFileSync(abs));
      }
      if (files.size === 0) return { code: 1, stdout: '', stderr: `upload-artifact: no files at ${w.path}` };
      gh.artifacts.set(`${opts.runId}/${w.name}`, files);
      return { code: 0, stdout: '', stderr: '' };
    }
    case 'actions/download-artifact': {
      const files = gh.artifacts.get(`${w['run-id'] || opts.runId}/${w.name}`);
      if (!files) return { code: 1, stdout: '', stderr: `download-artifact: no artifact ${w.name} in run ${w['run-id']}` };
      const dir = join(opts.workspace, w.path ?? '.');
      mkdirSync(dir, { recursive: true });
      for (const [name, content] of files) writeFileSync(join(dir, name), content);
      return { code: 0, stdout: '', stderr: '' };
    }
    case 'actions/github-script':
      return githubScript(w.script, opts, context, setOutput);
    default:
      throw new Error(`no local equivalent for uses: ${step.uses}`);
  }
}

async function githubScript(script: string, opts: RunOptions, context: object, setOutput: (k: string, v: string) => void) {
  let failedWith: string | undefined;
  const core = {
    setOutput: (k: string, v: string) => setOutput(k, v),
    setFailed: (m: string) => (failedWith = m),
    info: () => {},
  };
  // github-script resolves require() against the workspace; so does this (relative paths: process.cwd is the test's).
  const req = createRequire(join(opts.workspace, 'noop.js'));
  const wsRequire = (m: string) => {
    if (m !== 'fs') return req(m);
    // File paths in the script are relative to the workspace, as on GitHub.
    const fs = req('fs') as typeof NodeFs;
    const at = (p: string) => (p.startsWith('/') ? p : join(opts.workspace, p));
    return { ...fs, existsSync: (p: string) => fs.existsSync(at(p)), statSync: (p: string) => fs.statSync(at(p)), readFileSync: (p: string, e: BufferEncoding) => fs.readFileSync(at(p), e) };
  };
  const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<unknown>;
  const fn = new AsyncFunction('require', 'github', 'context', 'core', script);
  try {
    await fn(wsRequire, opts.github, context, core);
  } catch (err) {
    return { code: 1, stdout: '', stderr: `github-script: ${err instanceof Error ? err.message : String(err)}` };
  }
  return failedWith === undefined ? { code: 0, stdout: '', stderr: '' } : { code: 1, stdout: '', stderr: failedWith };
}

/** Copies the files a workspace needs (a checkout of a repository holding dmzfleet and its stacks). */
export function copyTree(from: string, to: string, skip: (name: string) => boolean = () => false): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    if (skip(e.name)) continue;
    if (e.isDirectory()) copyTree(join(from, e.name), join(to, e.name), skip);
    else if (e.isFile()) copyFileSync(join(from, e.name), join(to, e.name));
  }
}
