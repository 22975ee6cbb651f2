import { closeSync, lstatSync, openSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { openOwnFile, writeAll } from '../../durability/own-file.ts';
import { FleetError, clipPath, diag, escapeUnseen, fsReason, sortDiagnostics, type Diagnostic } from '../../diags/index.ts';
import type { RefreshResult } from '../../apply/index.ts';
import type { PlanDocument, PlanStackOptions, PlanFormat } from '../../plan/index.ts';
import { PLAN_FORMATS } from '../../plan/render/formats.ts';

/** The planner and its renderers, loaded when the command runs (not for `fleet --version` or `fleet validate`). */
const planning = () => import('../../plan/index.ts');
import type { LoadedStack } from '../../spec/index.ts';
import { type CliIO, modeOf, printDiagnostics, runCommand, useColor } from '../io.ts';
import { formatOption, loaderEnv, recordOutageNotices, recordUrlOption, stackOption } from '../options.ts';
import { baselineWasmOnly } from '../wasm-tiering.ts';
import { INTERRUPTED_EXIT } from './apply.ts';
import { onRefreshInterrupt } from './refresh.ts';
import type { RegisterCommand } from './types.ts';

interface PlanCliOptions {
  stack: string;
  recordUrl?: string;
  out?: string;
  format: PlanFormat;
  detailedExitcode?: boolean;
  target: string[];
  exclude: string[];
  allowDestroy: string[];
  replace: string[];
  refresh?: boolean;
}

/** `plan --refresh`: refresh the record from the data centers (reporting drift on stderr), then plan on that same record. */
async function refreshThenPlan(io: CliIO, stackDir: string, planOpts: PlanStackOptions) {
  // Loaded only here: it brings the HTTP services of the embedded data centers along.
  const { defaultActor, openSession, refreshStack } = await import('../../apply/index.ts');
  const session = await openSession(stackDir, { cwd: io.cwd, env: planOpts.env ?? io.env, onRecordOutage: recordOutageNotices(io, 'the refresh') });
  try {
    // Only the fleets the plan covers: a fleet --target / --exclude leaves out is not written to.
    const { targetFleet } = await planning();
    const targets = (planOpts.targets ?? []).map(targetFleet);
    const excludes = planOpts.excludes ?? [];
    const inScope = (fleet: string) => (targets.length === 0 || targets.includes(fleet)) && !excludes.includes(fleet);
    const stop = onRefreshInterrupt(io);
    let refresh;
    try {
      refresh = await refreshStack(session, { actor: defaultActor(), inScope, signal: stop.signal });
    } finally {
      stop.dispose();
    }
    const { checked, drift } = refresh;
    for (const d of drift) io.stderr.write(`refresh: ${d.kind} ${d.dataCenter} ${escapeUnseen(d.address)}: ${escapeUnseen(d.detail)}\n`);
    io.stderr.write(`refresh: ${checked} VMs checked, ${drift.length} differences.\n`);
    if (drift.some((d) => d.kind === 'unreachable')) {
      throw new FleetError(diag('plan.refresh-failed', `could not refresh from ${drift.filter((d) => d.kind === 'unreachable').map((d) => d.dataCenter).join(', ')}; plan without --refresh, or bring the DMZ clients back.`));
    }
    const { planStack } = await planning();
    const planned = await planStack(stackDir, { ...planOpts, record: session.record });
    // A fleet an apply holds was left alone (apply.refresh-locked): said with the plan's diagnostics.
    return { ...planned, diagnostics: [...refresh.diagnostics, ...planned.diagnostics], refresh: { checked, drift } };
  } finally {
    await session.close();
  }
}

/**
 * `--format json`: `{ "plan": <plan document>, "refresh"?: …, "diagnostics": [...] }`
 * (specs/schema/plan-output.schema.json). The plan's JSON is written once,
 * in pieces, and spliced in as it is (on a big stack it is tens of MB).
 */
function writeJsonEnvelope(write: (s: string) => void, plan: PlanDocument, writePlanJson: (plan: PlanDocument, sink: (piece: string) => void) => void, diagnostics: Diagnostic[], refresh: RefreshResult | undefined): void {
  write('{\n"plan": ');
  // The document's text ends with a newline; the envelope goes on after its last brace.
  let held = '';
  writePlanJson(plan, (piece) => {
    if (held) write(held);
    held = piece;
  });
  write(held.endsWith('\n') ? held.slice(0, -1) : held);
  write(envelopeTail(diagnostics, refresh));
}

/**
 * Writes the document to `file` (0600) a piece at a time: a first
 * import's document is 100 MB, never held as one string or buffer.
 * open()'s mode applies only to a file it creates, so an existing regular
 * file (an old plan, made world-readable) is made 0600 before anything is
 * written to it; a device (`--out /dev/stdout`) is left as it is.
 */
function writePlanFile(file: string, plan: PlanDocument, writePlanJson: (plan: PlanDocument, sink: (piece: string) => void) => void): void {
  // Through a link only to a device (outProblem refused any other); otherwise a link that appeared since is not followed (ELOOP).
  const target = lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink() ? statSync(file, { throwIfNoEntry: false }) : undefined;
  const device = target !== undefined && !target.isFile() && !target.isDirectory();
  const fd = device ? openSync(file, 'w', 0o600) : openOwnFile(file, 'write');
  try {
    writePlanJson(plan, (piece) => writeAll(fd, piece));
  } finally {
    closeSync(fd);
  }
}

/**
 * Why `--out` cannot be written, found before the stack is loaded or the
 * record read: a plan of a big stack takes seconds (and a deployed stack's is
 * sealed at its authority) before the file is opened. The write itself still
 * reports what this misses (permissions, a full disk).
 */
function outProblem(file: string, given: string): string | undefined {
  const shown = clipPath(given);
  try {
    return outProblemOf(file, shown);
  } catch (err) {
    // A name the file system refuses before any answer (ENAMETOOLONG: a 100,000-character --out was cli.internal).
    return `cannot write ${shown}: ${fsReason(err)}.`;
  }
}

/** outProblem's checks, `shown` the --out a diagnostic names (clipPath). */
function outProblemOf(file: string, shown: string): string | undefined {
  const folder = dirname(file);
  const folderStat = statSync(folder, { throwIfNoEntry: false });
  if (!folderStat) return `cannot write ${shown}: its folder ${clipPath(folder)} does not exist. Create the folder, or give --out a file in an existing one.`;
  if (!folderStat.isDirectory()) return `cannot write ${shown}: ${clipPath(folder)} is a file, not a folder. Give --out a file in an existing folder.`;
  if (statSync(file, { throwIfNoEntry: false })?.isDirectory()) return `cannot write ${shown}: it is a folder, not a file. Give --out a file name (for example ${join(shown, 'plan.json')}).`;
  // A link is written through only to a device (`--out /dev/stdout`): to a file, the plan overwrote whatever file the
  // link named (and made it 0600), and a dangling link created its target wherever it pointed.
  if (lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink()) {
    const target = statSync(file, { throwIfNoEntry: false });
    if (!target || target.isFile()) {
      return `cannot write ${shown}: it is a symbolic link (to ${clipPath(readlinkSync(file))}), and a plan is written only to a file of its own. Remove the link, or give --out another file name.`;
    }
  }
  return undefined;
}

function envelopeTail(diagnostics: Diagnostic[], refresh: RefreshResult | undefined): string {
  return `${refresh ? `,\n"refresh": ${JSON.stringify(refresh)}` : ''},\n"diagnostics": ${JSON.stringify(sortDiagnostics([...diagnostics]), null, 2)}\n}\n`;
}

/**
 * `--format json --out FILE`: the plan document went to FILE, so stdout says
 * where and what it holds in short instead of writing it a second time
 * (`PlanSavedResult` in specs/schema/plan-output.schema.json).
 */
function savedEnvelope(planFile: string, plan: PlanDocument, diagnostics: Diagnostic[], refresh: RefreshResult | undefined): string {
  const head = { planFile, formatVersion: plan.formatVersion, id: plan.id, stack: plan.stack, summary: plan.summary, blocked: plan.blocked };
  return `${JSON.stringify(head, null, 2).slice(0, -2)}${envelopeTail(diagnostics, refresh)}`;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/**
 * `fleet plan`: diff the specs against the record and print the plan.
 *
 * | exit | when                                                            |
 * | ---- | --------------------------------------------------------------- |
 * | 0    | a plan that can be applied (or no changes)                      |
 * | 1    | an error, or a mandatory violation (the plan is still printed)  |
 * | 2    | changes present (protect alone too), with --detailed-exitcode   |
 */
export const registerPlan: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('plan')
    .description('Diff the fleet specs against the record and show the changes apply would make.')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--out <file>', 'write the plan document (JSON, sealed: by the stack\'s authority when stack.yaml has one) to FILE (0600; never through a symbolic link to a file), for `fleet apply FILE`; with --format json, stdout then names FILE and the summary instead of repeating the document')
    .addOption(formatOption(PLAN_FORMATS))
    .option('--detailed-exitcode', 'exit 2 when the plan has changes, of members or of a fleet\'s protect (0: none, 1: error or blocked)')
    .option('--target <fleet>', 'plan only this fleet, or this member (`web/3`) (repeatable)', collect, [])
    .option('--exclude <fleet>', 'leave this fleet out (repeatable)', collect, [])
    .option('--allow-destroy <fleet>', 'allow deleting or replacing members of this protected fleet (repeatable)', collect, [])
    .option('--replace <address>', 'replace this member (`web/3`) with a new VM even if it matches its spec (repeatable)', collect, [])
    .option('--refresh', 'first ask every data center for its VMs\' actual state and record what is one diagram edge away (as `fleet refresh`, for the fleets in scope only)')
    .action(async (opts: PlanCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(io, async () => {
          baselineWasmOnly();
          if (opts.out !== undefined) {
            const problem = outProblem(resolve(io.cwd, opts.out), opts.out);
            if (problem) throw new FleetError(diag('plan.out-failed', problem, { file: opts.out }));
          }
          const planOpts = {
            cwd: io.cwd,
            env: loaderEnv(io, opts),
            targets: opts.target,
            excludes: opts.exclude,
            allowDestroy: opts.allowDestroy,
            replace: opts.replace,
            refresh: Boolean(opts.refresh),
            // A plan going to a file is sealed: `fleet apply FILE` trusts nothing else.
            seal: opts.out !== undefined,
            ...(opts.out !== undefined ? { out: { file: resolve(io.cwd, opts.out), shown: opts.out } } : {}),
            // A deployed stack's (one with an `authority` address) by its authority, with a key the record does not hold.
            sealAtAuthority: async (plan: PlanDocument, authority: NonNullable<LoadedStack['authority']>) =>
              (await import('../../../providers/authority-plans.ts')).sealAtAuthority(authority, loaderEnv(io, opts), plan),
          };
          const { hasChanges, planStack, renderPlan, writePlanJson } = await planning();
          let planned;
          try {
            planned = opts.refresh ? await refreshThenPlan(io, opts.stack, planOpts) : { ...(await planStack(opts.stack, planOpts)), refresh: undefined };
          } catch (err) {
            // Ctrl-C during --refresh (refreshStack's RefreshInterrupted, by name: the apply code loads only with --refresh).
            if (!(err instanceof Error && err.name === 'RefreshInterrupted')) throw err;
            io.stderr.write('Refresh interrupted: its locks are released; what it recorded before the interrupt stays recorded. Nothing was planned.\n');
            return INTERRUPTED_EXIT;
          }
          const { plan, diagnostics, timings, refresh } = planned;
          const all = [...diagnostics];
          if (plan.blocked) {
            const n = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
            all.push(diag('plan.blocked', `${n} mandatory policy violation${n === 1 ? '' : 's'}; see the plan's policy section. Nothing can be applied until they are resolved.`, { address: plan.stack }));
          }
          if (mode === 'text') printDiagnostics(io, diagnostics);
          const renderStart = performance.now();
          // The document is rendered and written once: to --out when given
          // (then --format json prints where it went, not the document
          // again), else to stdout with --format json.
          if (opts.out !== undefined) {
            const file = resolve(io.cwd, opts.out);
            try {
              writePlanFile(file, plan, writePlanJson);
            } catch (err) {
              throw new FleetError(diag('plan.out-failed', `cannot write ${clipPath(opts.out)}: ${fsReason(err)}.`, { file: opts.out }));
            }
            if (mode === 'json') io.stdout.write(savedEnvelope(opts.out, plan, all, refresh));
          } else if (mode === 'json') {
            writeJsonEnvelope((s) => io.stdout.write(s), plan, writePlanJson, all, refresh);
          }
          if (mode !== 'json') io.stdout.write(renderPlan(plan, opts.format, { color: useColor(io), ...(opts.out !== undefined ? { planFile: opts.out } : {}) }));
          if (io.env.FLEET_DEBUG) {
            const t = { ...timings, render: performance.now() - renderStart };
            io.stderr.write(`plan timings (ms): ${Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}\n`);
          }
          if (plan.blocked) {
            if (mode === 'text') printDiagnostics(io, all.slice(diagnostics.length));
            return 1;
          }
          // A change of a fleet's protection alone is a change too: apply writes it.
          return opts.detailedExitcode && hasChanges(plan) ? 2 : 0;
        }, mode),
      );
    });
};
