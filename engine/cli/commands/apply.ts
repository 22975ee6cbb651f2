import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { FleetError, diag, type Diagnostic } from '../../diags/index.ts';
import type { ApplyResult, ProgressMode, StackSession } from '../../apply/index.ts';
import { asPlanDocument, checkPlanDocument, planStack, renderText, type PlanDocument } from '../../plan/index.ts';
import { type CliIO, modeOf, reportDiagnostics, runCommand, useColor } from '../io.ts';
import { loaderEnv, lockTimeoutOption, parallelismOption, recordUrlOption, stackOption } from '../options.ts';
import type { RegisterCommand } from './types.ts';

interface ApplyCliOptions {
  stack: string;
  recordUrl?: string;
  yes?: boolean;
  parallelism?: string;
  format: 'text' | 'json';
  lockTimeout?: string;
  target: string[];
  exclude: string[];
  allowDestroy: string[];
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/**
 * `fleet apply [PLANFILE]`: carry out a fresh plan (shown first, confirmed on
 * a TTY or with --yes) or a saved one (applied exactly, refused when stale).
 * Exit 0 when every member reached its planned state, 1 otherwise.
 */
export const registerApply: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('apply')
    .description('Carry out a plan through the DMZ client of each data center.')
    .argument('[planfile]', 'a plan saved with `fleet plan --out FILE` (applied exactly, no prompt)')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--yes', 'apply a fresh plan without asking (needed without a terminal)')
    .addOption(parallelismOption())
    .addOption(lockTimeoutOption())
    .addOption(new Option('--format <format>', 'output: text, or json (one event per line on stdout, diagnostics as events)').choices(['text', 'json']).default('text'))
    .option('--target <fleet>', 'fresh plan: only this fleet (repeatable)', collect, [])
    .option('--exclude <fleet>', 'fresh plan: leave this fleet out (repeatable)', collect, [])
    .option('--allow-destroy <fleet>', 'fresh plan: allow deleting or replacing members of this protected fleet (repeatable); the override goes with each deleting request, proven with FLEET_ADMIN_TOKEN when set', collect, [])
    .action(async (planfile: string | undefined, opts: ApplyCliOptions) => {
      setExit(await runCommand(io, () => runApply(io, planfile, opts), modeOf(opts.format, true)));
    });
};

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new FleetError(diag('cli.usage', `${flag} takes a whole number of at least 1, not ${JSON.stringify(value)}.`));
  return n;
}

function nonNegative(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new FleetError(diag('cli.usage', `${flag} takes a number of seconds (0 or more), not ${JSON.stringify(value)}.`));
  return n;
}

async function readPlanFile(io: CliIO, file: string): Promise<PlanDocument> {
  const path = resolve(io.cwd, file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new FleetError(diag('apply.plan-file', `Cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`, { file }));
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new FleetError(diag('apply.plan-file', `${file} is not JSON: ${err instanceof Error ? err.message : String(err)}.`, { file }));
  }
  // Checked against specs/schema/plan.schema.json before any field is trusted.
  const problems = checkPlanDocument(doc, text, file);
  if (problems.length > 0) throw new FleetError(problems);
  return asPlanDocument(doc);
}

async function confirm(io: CliIO): Promise<boolean> {
  io.stderr.write('\nDo you want to apply these changes? Only "yes" is accepted: ');
  const rl = createInterface({ input: io.stdin, terminal: false });
  try {
    for await (const line of rl) return line.trim() === 'yes';
    return false;
  } finally {
    rl.close();
  }
}

/** The exit code of an apply stopped by an interrupt (128 + SIGINT, as shells report it). */
export const INTERRUPTED_EXIT = 130;

/**
 * Ctrl-C (SIGINT) or SIGTERM during an apply, the way Terraform takes it:
 * the first one stops further members from starting, and the members in
 * flight go on to their end (their runs are at the DMZ clients already; the
 * journal gets their answers); the second one exits at once, leaving what
 * was in flight `started` in the journal for the next plan or apply.
 */
function onInterrupt(io: CliIO): { signal: AbortSignal; dispose(): void } {
  const stop = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (!stop.signal.aborted) {
      stop.abort();
      io.stderr.write(
        `\n${sig}: no further VM will be started; the ones in flight finish and are journalled. ${sig === 'SIGINT' ? 'Press Ctrl-C' : 'Signal'} again to stop at once (the next plan or apply continues from the record).\n`,
      );
      return;
    }
    io.stderr.write(`${sig} again: stopping now; the steps in flight stay \`started\` in the journal.\n`);
    process.exit(INTERRUPTED_EXIT);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: stop.signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** Apply steps left `started` by an interrupted apply: say so, and close them in the journal. */
async function noteInterrupted(io: CliIO, session: StackSession): Promise<void> {
  const open = (await session.record.unfinishedSteps(session.stack.name)).filter((s) => s.status === 'started');
  if (open.length === 0) return;
  const plans = [...new Set(open.map((s) => s.planId))];
  for (const s of open) {
    await session.record.journal({ ...s, status: 'failed', detail: 'interrupted: the apply stopped before this step answered' });
  }
  for (const id of plans) await session.record.finishPlan(id, 'interrupted').catch(() => {});
  // A member's steps go out together (a run), so one member may leave several unanswered.
  const members = [...new Set(open.map((s) => s.address))];
  io.stderr.write(
    `note: apply ${plans.join(', ')} was interrupted with ${open.length} step${open.length === 1 ? '' : 's'} unanswered, of ${members.length} member${members.length === 1 ? '' : 's'} (${members
      .slice(0, 5)
      .join(', ')}${members.length > 5 ? ', …' : ''}); this plan continues from what the record holds now.\n`,
  );
}

async function runApply(io: CliIO, planfile: string | undefined, opts: ApplyCliOptions): Promise<number> {
  // Loaded on use: the services and HTTP client are not needed by other commands' start-up.
  const { applyPlan, createProgress, openSession } = await import('../../apply/index.ts');
  const parallelism = positiveInt(opts.parallelism, '--parallelism');
  const lockTimeout = nonNegative(opts.lockTimeout, '--lock-timeout');
  const saved = planfile !== undefined ? await readPlanFile(io, planfile) : undefined;
  const json = opts.format === 'json';
  const mode = modeOf(opts.format, true);
  const env = loaderEnv(io, opts);
  const session = await openSession(opts.stack, { cwd: io.cwd, env, ...(lockTimeout !== undefined ? { lockTimeoutSeconds: lockTimeout } : {}) });
  try {
    reportDiagnostics(io, mode, session.warnings);
    let plan: PlanDocument;
    if (saved) {
      if (saved.stack !== session.stack.name) {
        throw new FleetError(diag('apply.plan-stack', `${planfile} was made for stack ${saved.stack}, not ${session.stack.name}.`, { file: planfile }));
      }
      plan = saved;
    } else {
      await noteInterrupted(io, session);
      plan = (
        await planStack(opts.stack, {
          cwd: io.cwd,
          env,
          record: session.record,
          loaded: { stack: session.stack, pack: session.pack, fleets: [...session.fleets], diagnostics: session.warnings },
          targets: opts.target,
          excludes: opts.exclude,
          allowDestroy: opts.allowDestroy,
        })
      ).plan;
      if (json) io.stdout.write(`${JSON.stringify({ type: 'plan', planId: plan.id, summary: plan.summary, blocked: plan.blocked, at: new Date().toISOString() })}\n`);
      else io.stdout.write(renderText(plan, { color: useColor(io) }));
    }
    const changes = plan.changes.filter((c) => c.action !== 'noop').length;
    if (changes === 0) {
      if (!json) io.stdout.write('Nothing to apply.\n');
      return plan.blocked ? 1 : 0;
    }
    if (!saved && !plan.blocked && !opts.yes) {
      if (!io.stdin.isTTY) {
        throw new FleetError(diag('apply.confirmation-required', 'No terminal to ask for confirmation: run with --yes, or apply a saved plan (`fleet plan --out plan.json` then `fleet apply plan.json`).'));
      }
      if (!(await confirm(io))) throw new FleetError(diag('apply.cancelled', 'The answer was not "yes"; nothing was changed.'));
    }
    const progressMode: ProgressMode = json ? 'json' : io.stderr.isTTY ? 'tty' : 'plain';
    const progress = createProgress(progressMode, json ? io.stdout : io.stderr);
    const interrupt = onInterrupt(io);
    let result: ApplyResult;
    try {
      result = await applyPlan({
        plan,
        record: session.record,
        providers: session.providers,
        owners: Object.fromEntries(session.fleets.map((f) => [f.name, f.owner])),
        protection: Object.fromEntries(session.fleets.map((f) => [f.name, f.protect])),
        ...(env.FLEET_ADMIN_TOKEN ? { adminToken: env.FLEET_ADMIN_TOKEN } : {}),
        parallelism: parallelism ?? session.stack.apply.parallelism,
        lockTimeoutMs: (lockTimeout ?? session.stack.apply.lockTimeoutSeconds) * 1000,
        onEvent: (e) => progress.onEvent(e),
        signal: interrupt.signal,
      });
    } finally {
      interrupt.dispose();
      progress.finish();
    }
    const failures: Diagnostic[] = result.failed.map((f) =>
      diag('apply.member-failed', `${f.action} stopped at ${f.step} in ${f.dataCenter}: ${f.diagnostic.summary}: ${f.diagnostic.detail}`, { address: f.address }),
    );
    if (!json) {
      const secs = (result.elapsedMs / 1000).toFixed(1);
      const outcome = result.notStarted > 0 ? 'interrupted' : failures.length ? 'finished with failures' : 'complete';
      const left = result.notStarted > 0 ? `, ${result.notStarted} not started` : '';
      io.stdout.write(
        `\nApply ${outcome}: ${result.succeeded} VM${result.succeeded === 1 ? '' : 's'} changed, ${failures.length} failed${left}, ${result.steps} steps in ${secs}s.\n`,
      );
    }
    reportDiagnostics(io, mode, failures);
    if (result.notStarted > 0) {
      io.stderr.write(`Run \`fleet apply\` again to carry out the ${result.notStarted} change${result.notStarted === 1 ? '' : 's'} not started.\n`);
      return INTERRUPTED_EXIT;
    }
    return failures.length ? 1 : 0;
  } finally {
    await session.close();
  }
}
