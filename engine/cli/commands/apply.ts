import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { FleetError, clip, clipPath, diag, escapeUnseen, quote, fsReason, type Diagnostic } from '../../diags/index.ts';
import type { ApplyEvent, ApplyResult, MemberFailure, ProgressMode, StackSession } from '../../apply/index.ts';
// Not the apply barrel: a value import of it made every command, `--version` too, load the executor, the record and
// Fastify at start-up (test/build.e2e.test.ts checks what the entry loads).
import { failureHint } from '../../apply/failure-cause.ts';
import type { PlanDocument } from '../../plan/index.ts';
import type { LockHandle } from '../../record/index.ts';
import { type CliIO, modeOf, reportDiagnostics, runCommand, useColor } from '../io.ts';
import { MAX_PARALLELISM, OPTION_ENV, loaderEnv, lockTimeoutOption, parallelismOption, recordOutageNotices, recordUrlOption, stackOption } from '../options.ts';
import type { RegisterCommand } from './types.ts';
import type { FleetChange } from '../../model/index.ts';
import { baselineWasmOnly } from '../wasm-tiering.ts';

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
  replace: string[];
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The planner and the plan document, loaded when the command runs (not for `fleet --version` or `fleet validate`). */
const planning = () => import('../../plan/index.ts');

/**
 * `fleet apply [PLANFILE]`: carry out a fresh plan (shown first, confirmed on
 * a TTY or with --yes) or a saved one (applied exactly, refused when stale).
 * Exit 0 when every member reached its planned state, 1 otherwise.
 */
export const registerApply: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('apply')
    .description('Carry out a plan through the DMZ client of each data center.')
    .argument('[planfile]', 'a plan saved with `fleet plan --out FILE` (applied exactly, no prompt; --target, --exclude, --allow-destroy and --replace are refused with it: give them to `fleet plan`)')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--yes', 'apply a fresh plan without asking (needed without a terminal)')
    .addOption(parallelismOption())
    .addOption(lockTimeoutOption())
    .addOption(new Option('--format <format>', 'output: text, or json (one event per line on stdout, diagnostics as events)').choices(['text', 'json']).default('text'))
    .option('--target <fleet>', 'fresh plan: only this fleet, or this member (`web/3`) (repeatable)', collect, [])
    .option('--exclude <fleet>', 'fresh plan: leave this fleet out (repeatable)', collect, [])
    .option('--allow-destroy <fleet>', 'fresh plan: allow deleting or replacing members of this protected fleet (repeatable); the override goes with each deleting request, proven with FLEET_ADMIN_TOKEN when set', collect, [])
    .option('--replace <address>', 'fresh plan: replace this member (`web/3`) with a new VM even if it matches its spec (repeatable)', collect, [])
    .action(async (planfile: string | undefined, opts: ApplyCliOptions, cmd: Command) => {
      // A PGlite record's PostgreSQL stays on V8's baseline WebAssembly compiler (wasm-tiering.ts).
      baselineWasmOnly();
      // A bad value names where it came from: the flag, or the variable standing for it.
      const said = (key: 'parallelism' | 'lockTimeout', flag: string) => (cmd.getOptionValueSource(key) === 'env' ? `${flag} (from ${OPTION_ENV[key]})` : flag);
      setExit(await runCommand(io, () => runApply(io, planfile, opts, said), modeOf(opts.format, true)));
    });
};

/**
 * --parallelism: 1 to MAX_PARALLELISM. Above it every member used to fail at
 * its DMZ client (400: `lane/width must be <= 1000`) after the plan was shown.
 */
function parallelismOf(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // Decimal digits only: Number() alone read 0x10 as 16, 1e2 as 100 and " 5" as 5.
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARALLELISM) {
    throw new FleetError(diag('cli.usage', `${flag} takes a whole number from 1 to ${MAX_PARALLELISM}, not ${quote(value)}.`));
  }
  return n;
}

function nonNegative(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // Decimal seconds (`30`, `0.5`): Number() alone read "" as 0 and 0x10 as 16.
  const n = /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < 0) throw new FleetError(diag('cli.usage', `${flag} takes a number of seconds (0 or more), not ${quote(value)}.`));
  return n;
}

/**
 * The most of a saved plan `fleet apply` reads: 256 MiB. A plan of 100,000
 * new members is about 103 MiB (bench/plan), and the authority takes a plan
 * body of at most 128 MiB (PLAN_BODY_LIMIT). It must stay below V8's longest
 * string (512 MiB): a plan file that was /dev/zero read ~640 MB, then failed
 * with "Invalid string length" naming nothing.
 */
export const PLAN_FILE_MAX_BYTES = 256 * 1024 * 1024;

/** Reads `path` whole, or answers 'too-large' past `maxBytes`: a regular file by its size, before reading (then in one read); a pipe or device in chunks, once it has given more. */
async function readBounded(path: string, maxBytes: number): Promise<Buffer | 'too-large'> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.isFile()) return st.size > maxBytes ? 'too-large' : await fh.readFile();
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(1024 * 1024, maxBytes + 1 - total));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return Buffer.concat(chunks, total);
      total += bytesRead;
      if (total > maxBytes) return 'too-large';
      chunks.push(chunk.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

/** Reads and checks a saved plan (`fleet apply PLANFILE`); `maxBytes` is PLAN_FILE_MAX_BYTES but in tests. */
export async function readPlanFile(io: CliIO, file: string, maxBytes = PLAN_FILE_MAX_BYTES): Promise<PlanDocument> {
  const path = resolve(io.cwd, file);
  let text: string;
  try {
    const bytes = await readBounded(path, maxBytes);
    if (bytes === 'too-large') {
      throw new FleetError(
        diag(
          'apply.plan-file',
          `${clipPath(file)} is over ${sizeOf(maxBytes)}, the most of a plan file \`fleet apply\` reads (a plan of 100,000 new members is about 103 MiB): it is not a plan written by \`fleet plan --out FILE\`.`,
          { file },
        ),
      );
    }
    text = bytes.toString('utf8');
  } catch (err) {
    if (err instanceof FleetError) throw err;
    // `fleet apply web` meaning one fleet: PLANFILE is a file, the fleet goes with --target.
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    const fleetLike = missing && /^[a-z0-9]+(-[a-z0-9]+)*$/.test(file);
    const next = !missing
      ? ''
      : fleetLike
        ? ` PLANFILE is a plan saved with \`fleet plan --out FILE\`; to apply fleet ${clipPath(file)} alone, give it with --target: \`fleet apply --target ${clipPath(file)}\`.`
        : ` PLANFILE is a plan saved with \`fleet plan --out ${clipPath(file)}\`; without one, \`fleet apply\` plans afresh.`;
    throw new FleetError(diag('apply.plan-file', `Cannot read ${clipPath(file)}: ${fsReason(err)}.${next}`, { file }));
  }
  // `fleet plan --format markdown > plan.md` (the pull-request comment) given as the plan: it was "not JSON: Unexpected token '<'".
  if (text.startsWith('<!-- fleet-plan ')) {
    throw new FleetError(
      diag(
        'apply.plan-file',
        `${clipPath(file)} is the markdown of \`fleet plan --format markdown\` (the pull-request comment), not a plan file; write one with \`fleet plan --out FILE\` (with --format markdown too: the comment on stdout, the plan in FILE).`,
        { file },
      ),
    );
  }
  // Checked against specs/schema/plan.schema.json before any field is trusted.
  const { asPlanDocument, checkPlanDocument, parsePlanJson } = await planning();
  const parsed = parsePlanJson(text, file);
  if ('diagnostic' in parsed) throw new FleetError(parsed.diagnostic);
  const { doc } = parsed;
  const problems = checkPlanDocument(doc, parsed.text, file);
  if (problems.length > 0) throw new FleetError(problems);
  return asPlanDocument(doc);
}

/** A byte count as the bound is said: whole MiB, else bytes (a test's small bound). */
function sizeOf(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

/** The "yes" prompt; `signal` (a Ctrl-C while it waits) ends it with "no". */
export async function confirm(io: CliIO, signal?: AbortSignal): Promise<boolean> {
  io.stderr.write('\nDo you want to apply these changes? Only "yes" is accepted: ');
  const rl = createInterface({ input: io.stdin, terminal: false });
  const stop = () => rl.close();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    if (signal?.aborted) return false;
    for await (const line of rl) return !signal?.aborted && line.trim() === 'yes';
    return false;
  } finally {
    signal?.removeEventListener('abort', stop);
    rl.close();
  }
}

/** How often the locks taken before planning are renewed until applyPlan takes them over (a third of the record's default 30 s lease). */
const LEASE_BEAT_MS = 10_000;

/**
 * The locks taken before planning were lost (their lease expired and another
 * apply took them, or `fleet unlock`) before the apply started: `err` is the
 * heartbeat's record.lock-lost (anything else, a record error, is `err`
 * itself). Before, that bare diagnostic ("lock … no longer holds fleet web")
 * was all the apply said; it now says when, that nothing was changed, and
 * what to do. `asked`: the apply waited at its confirmation prompt.
 */
export function lockLostBeforeApply(err: unknown, asked: boolean): unknown {
  const lost = err instanceof FleetError ? err.diagnostics.find((d) => d.code === 'record.lock-lost') : undefined;
  if (!lost) return err;
  const when = asked ? 'while it planned or waited at its confirmation prompt' : 'while it planned';
  return new FleetError(
    diag(
      'record.lock-lost',
      `${lost.detail} This apply lost it ${when}, before it started: nothing was changed. Another apply may be changing these fleets now; once it is done (\`fleet state list\` shows the locks held), run \`fleet apply\` again: it plans again against what the record then holds.`,
      lost.address !== undefined ? { address: lost.address } : {},
    ),
  );
}

/** `web/0, web/1, …` shortened past 10. */
function shortList(addresses: readonly string[]): string {
  return addresses.length <= 10 ? addresses.join(', ') : `${addresses.slice(0, 10).join(', ')}, … (${addresses.length} in all)`;
}

/**
 * One apply.member-failed per failed member: what (its action), where (the
 * step, the data center, the address), why, and, on a line of its own, what
 * to do about that cause (failureHint). The cause quotes text from
 * outside (a cloud's error message, a DMZ client's or authority's veto
 * reason): in text its line breaks are shown as escapes, like its other
 * unseen characters, so it stays on the diagnostic's line and no line of it
 * passes for a line of fleet's own (a diagnostic keeps the line breaks of
 * its detail, indented). JSON events keep it as the step's diagnostic has it
 * (a reason or a cloud's message is clipped there already, engine/apply/member.ts).
 */
export function memberFailures(failed: readonly MemberFailure[], text: boolean): Diagnostic[] {
  return failed.map((f) => {
    // The step's own detail starts with the step and the data center, which this sentence names already.
    const own = `${f.step} in ${f.dataCenter}: `;
    const cause = `${f.diagnostic.summary}: ${f.diagnostic.detail.startsWith(own) ? f.diagnostic.detail.slice(own.length) : f.diagnostic.detail}`;
    // Then what to do, by cause (its own line: a veto and a cloud's failure have different ways out).
    const hint = failureHint(f.cause, { address: f.address, code: f.diagnostic.code });
    return diag('apply.member-failed', `${f.action} stopped at ${f.step} in ${f.dataCenter}: ${text ? escapeUnseen(cause) : cause}\n${hint}`, { address: f.address });
  });
}

/** Failed members shown one by one in text; past this, the rest are counted in a note. */
export const FAILURES_SHOWN = 20;

/**
 * The failures a text apply prints: the first FAILURES_SHOWN (by address),
 * and a note counting the others. An apply whose every member failed (a
 * cloud down) printed a four-line diagnostic per member: 40,000 lines for
 * 10,000 VMs, mostly the same cause, burying the summary's count in a CI
 * log. JSON reports every one.
 */
export function textFailures(failures: readonly Diagnostic[]): { shown: Diagnostic[]; note?: string } {
  // web/2 before web/10: the first members of each fleet are shown.
  const sorted = [...failures].sort((a, b) => (a.address ?? '').localeCompare(b.address ?? '', 'en', { numeric: true }));
  const shown = sorted.slice(0, FAILURES_SHOWN);
  const rest = sorted.slice(FAILURES_SHOWN).map((d) => d.address ?? '');
  if (rest.length === 0) return { shown };
  return {
    shown,
    note: `note: ${rest.length} more member${rest.length === 1 ? '' : 's'} failed, not shown one by one: ${shortList(rest)}. \`fleet state list\` shows where each stands; \`fleet apply --format json\` reports each failure.\n`,
  };
}

/** The exit code of an apply stopped by an interrupt (128 + SIGINT, as shells report it). */
export const INTERRUPTED_EXIT = 130;

/** The record faults that stop an apply after it began, not for a bug of its input. */
const RECORD_LOST: ReadonlySet<string> = new Set(['record.unreachable', 'record.unwritable']);

/**
 * The record lost mid-apply (a failover, a full disk): what already went to
 * the data centers is not undone, so the diagnostic says the apply stopped
 * and how it goes on, beside the cause.
 */
export function stoppedMidApply(err: unknown): unknown {
  if (!(err instanceof FleetError) || !RECORD_LOST.has(err.diagnostics[0]?.code ?? '')) return err;
  const [first, ...rest] = err.diagnostics;
  const detail = `${first.detail} The apply stopped here; steps it had sent may still be carried out by the DMZ clients. Run \`fleet apply\` again once the record is back: it continues from what the record holds (docs/recovery.md, "Outages").`;
  return new FleetError([{ ...first, detail }, ...rest]);
}

/** A Ctrl-C before the apply began: nothing was asked of any data center; the locks are released on the way out. */
function cancelled(io: CliIO): number {
  io.stderr.write('Apply cancelled: nothing was applied.\n');
  return INTERRUPTED_EXIT;
}

/**
 * Ctrl-C (SIGINT) or SIGTERM during an apply, the way Terraform takes it:
 * the first one stops further members from starting, and the members in
 * flight go on to their end (their runs are at the DMZ clients already; the
 * journal gets their answers); a member given its place whose requests had
 * not gone out yet (its `started` rows still being written) sends nothing and
 * counts as not started (runMember's `halted`); the second one exits at once, leaving what
 * was in flight `started` in the journal for the next plan or apply.
 * Before `applying()` (planning and the "yes" prompt, under the locks taken
 * before planning) the first signal cancels: nothing is applied, the locks
 * are released, exit 130.
 * After `settle()` (the apply phase is over: its summary is on its way) a
 * signal no longer stops anything: the first one says the apply is done and
 * the locks are being released, the second exits at once. Without that, a
 * Ctrl-C in those last moments got Node's default handling: exit 130 after
 * "Apply complete", and the locks left for the next apply to break.
 * `say` writes its notices: during the apply, above a TTY's progress bars
 * (Progress.note), where a redraw does not write over them.
 */
export function onInterrupt(io: CliIO, say: (text: string) => void = (text) => io.stderr.write(text)): { signal: AbortSignal; applying(): void; settle(): void; dispose(): void } {
  const stop = new AbortController();
  let applying = false;
  let settled = false;
  let closing = false;
  const handler = (sig: NodeJS.Signals) => {
    const again = `${sig === 'SIGINT' ? 'Press Ctrl-C' : 'Signal'} again to exit at once.`;
    if (settled) {
      if (closing) process.exit(INTERRUPTED_EXIT);
      closing = true;
      say(`\n${sig}: the apply is done; releasing its locks and closing the record. ${again}\n`);
      return;
    }
    if (!applying) {
      // Planning, or the "yes" prompt, under the locks taken before planning: nothing has been asked of a data center yet.
      if (stop.signal.aborted) process.exit(INTERRUPTED_EXIT);
      stop.abort();
      say(`\n${sig}: nothing was applied; stopping and releasing the locks. ${again}\n`);
      return;
    }
    if (!stop.signal.aborted) {
      stop.abort();
      say(
        `\n${sig}: no further VM will be started, nor one whose requests have not gone out yet; the ones in flight (their requests sent) finish and are journalled. ${sig === 'SIGINT' ? 'Press Ctrl-C' : 'Signal'} again to stop at once (the next plan or apply continues from the record).\n`,
      );
      return;
    }
    // Its locks are not released (that would wait for the record): say what becomes of them.
    say(
      `${sig} again: stopping now; the steps in flight stay \`started\` in the journal, and this apply's fleet locks stay held until the next \`fleet apply\` on this host breaks them or their lease runs out (30 s); \`fleet state list\` shows them.\n`,
    );
    process.exit(INTERRUPTED_EXIT);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: stop.signal,
    applying: () => {
      applying = true;
    },
    settle: () => {
      settled = true;
    },
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/**
 * Apply steps left `started` by an interrupted apply: close them in the
 * journal, record their apply interrupted (closeInterrupted), and say so.
 * Only those of `fleets`, whose locks this apply holds: steps of other
 * fleets may belong to an apply still running. Under a fresh plan's locks
 * and a saved plan's alike.
 */
async function noteInterrupted(io: CliIO, session: StackSession, fleets: readonly string[]): Promise<void> {
  const { closeInterrupted } = await import('../../apply/index.ts');
  const { plans, steps, carriedOut, members } = await closeInterrupted(session.record, session.stack.name, fleets);
  if (plans.length === 0) return;
  if (steps === 0) {
    // An apply that stopped mid-way with the record down (apply.stopped said this apply would close it), or killed before its first step.
    io.stderr.write(`note: apply ${plans.join(', ')} stopped before its end without recording it; it is recorded interrupted now.\n`);
    return;
  }
  io.stderr.write(
    `note: apply ${plans.join(', ')} was interrupted with ${steps} step${steps === 1 ? '' : 's'} unjournalled${carriedOut > 0 ? ` (${carriedOut} carried out, closed done)` : ''}, of ${members.length} member${members.length === 1 ? '' : 's'} (${members
      .slice(0, 5)
      .join(', ')}${members.length > 5 ? ', …' : ''}); this plan continues from what the record holds now.\n`,
  );
}

/** How long an apply that broke a dead apply's lock waits for that apply's edges still in flight at the DMZ clients. */
const STRAY_EDGES_WAIT_MS = 10_000;

/**
 * Waits (at most STRAY_EDGES_WAIT_MS) until no VM of `fleets` has an edge
 * approved and unreported. Breaking a dead apply's lock stops its runs'
 * next authorizations (fencing), not the edges the authority approved
 * already, ahead: a DMZ client that outlived the apply carries those out and
 * reports them, and a plan made before they land would ask for edges the VM
 * has passed (vetoed: the member fails) or see the record move under it
 * (apply.record-changed). An edge nobody will report (its DMZ client died
 * too) only costs the wait; the plan then continues from the record.
 */
async function awaitStrayEdges(io: CliIO, session: StackSession, fleets: readonly string[], signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + STRAY_EDGES_WAIT_MS;
  let said = false;
  for (;;) {
    const edges = await session.record.edgesInFlight(session.stack.name, fleets);
    if (edges.length === 0) {
      if (said) io.stderr.write('note: they are done.\n');
      return;
    }
    if (!said) {
      said = true;
      const shown = edges.slice(0, 5).map((e) => `${escapeUnseen(e.address)} ${escapeUnseen(e.detail.replace(/^intent approved: /, ''))}`);
      io.stderr.write(
        `note: waiting up to ${STRAY_EDGES_WAIT_MS / 1000} s for ${edges.length} step${edges.length === 1 ? '' : 's'} the interrupted apply had approved to be reported by the DMZ clients (${shown.join(', ')}${edges.length > 5 ? ', …' : ''}).\n`,
      );
    }
    if (Date.now() >= deadline || signal.aborted) {
      io.stderr.write(`note: ${edges.length} still unreported after ${STRAY_EDGES_WAIT_MS / 1000} s (their DMZ client may have stopped too); planning from what the record holds.\n`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The options that shape a fresh plan (`fleet apply` without a plan file), by flag. */
const FRESH_PLAN_FLAGS = { target: '--target', exclude: '--exclude', allowDestroy: '--allow-destroy', replace: '--replace' } as const;

/**
 * A saved plan is applied exactly as it was made: its scope, its overrides
 * and its replacements are in the file (and sealed). A --target given with
 * it used to be ignored without a word, so `fleet apply plan.json --target
 * web` applied every fleet of the plan; it is refused instead.
 */
function refuseFreshPlanFlags(planfile: string, opts: ApplyCliOptions): void {
  const given = (Object.keys(FRESH_PLAN_FLAGS) as (keyof typeof FRESH_PLAN_FLAGS)[]).filter((k) => opts[k].length > 0).map((k) => FRESH_PLAN_FLAGS[k]);
  if (given.length === 0) return;
  throw new FleetError(
    diag(
      'cli.usage',
      `${given.join(', ')} shape${given.length === 1 ? 's' : ''} a fresh plan; ${clipPath(planfile)} is applied exactly as it was made. Make the plan with ${given.length === 1 ? 'it' : 'them'} (\`fleet plan ${given.map((f) => `${f} …`).join(' ')} --out ${clipPath(planfile)}\`) and apply that, or leave ${given.length === 1 ? 'it' : 'them'} out.`,
    ),
  );
}

const lowerFirst = (text: string): string => `${text.charAt(0).toLowerCase()}${text.slice(1)}`;

function planStackDiag(planfile: string, planStack: string, stack: string, stackFlag: string): Diagnostic {
  return diag(
    'apply.plan-stack',
    `${clipPath(planfile)} was made for stack ${clip(planStack)}, not for stack ${stack} (--stack ${clipPath(stackFlag)}). Apply it with the --stack of stack ${clip(planStack)}, or make a plan for this stack with \`fleet plan --out\`.`,
    { file: planfile },
  );
}

async function runApply(
  io: CliIO,
  planfile: string | undefined,
  opts: ApplyCliOptions,
  said: (key: 'parallelism' | 'lockTimeout', flag: string) => string = (_key, flag) => flag,
): Promise<number> {
  if (planfile !== undefined) refuseFreshPlanFlags(planfile, opts);
  // Loaded on use: the services and HTTP client are not needed by other commands' start-up.
  const { ApplyStoppedError, applyFleetChanges, applyPlan, checkCloud, checkSavedPlan, createProgress, defaultActor, lockFleets, openSession } = await import('../../apply/index.ts');
  const parallelism = parallelismOf(opts.parallelism, said('parallelism', '--parallelism'));
  const lockTimeout = nonNegative(opts.lockTimeout, said('lockTimeout', '--lock-timeout'));
  const saved = planfile !== undefined ? await readPlanFile(io, planfile) : undefined;
  const json = opts.format === 'json';
  const mode = modeOf(opts.format, true);
  const env = loaderEnv(io, opts);
  /** A notice on stderr while the apply runs; once the progress exists, above a TTY's progress bars (a redraw would write over it). */
  let notice = (text: string): void => void io.stderr.write(text);
  // A saved plan's stack is checked before the record is opened, and its record must exist (`fleet plan --out` made
  // it): another stack's plan, or another record's, on a fresh stack created the stack's record before it was refused.
  const savedChecks = saved
    ? {
        existingRecord: true,
        beforeRecord: (stack: { name: string }) => {
          if (saved.stack !== stack.name) throw new FleetError(planStackDiag(planfile!, saved.stack, stack.name, opts.stack));
        },
      }
    : {};
  const session = await openSession(opts.stack, {
    ...savedChecks,
    cwd: io.cwd,
    env,
    ...(lockTimeout !== undefined ? { lockTimeoutSeconds: lockTimeout } : {}),
    // A PGlite record is one process's: another apply holding it is waited for as its locks would be (--lock-timeout).
    onRecordWait: (who, ms) => io.stderr.write(`note: the PGlite record is open in ${escapeUnseen(who)}; waiting up to ${Math.ceil(ms / 1000)} s for it (\`--lock-timeout SECONDS\` waits longer).\n`),
    // A PostgreSQL record's outage (a failover): the apply's record calls retry; said once when it begins and when it ends.
    // Mid-apply on a TTY, above the progress bars (notice, below).
    onRecordOutage: recordOutageNotices(io, 'the apply', (text) => notice(text)),
  }).catch((err: unknown) => {
    // No record where the stack keeps it: the plan was made against another one (`fleet plan --out` creates it).
    if (saved && err instanceof FleetError && err.diagnostics[0]?.code === 'record.not-found') {
      throw new FleetError(
        diag('apply.plan-foreign', `${clipPath(String(planfile))} was made against a record this stack does not have (${lowerFirst((err.diagnostics[0].detail ?? '').replace(/\.?\s*Check --record-url.*$/s, ''))}; \`fleet plan --out\` creates it). Nothing was created; make a plan for this stack with \`fleet plan --out\` and apply that.`, { file: planfile }),
      );
    }
    throw err;
  });
  const progressMode: ProgressMode = json ? 'json' : io.stderr.isTTY ? 'tty' : 'plain';
  const progress = createProgress(progressMode, json ? io.stdout : io.stderr);
  if (!json) notice = (text) => progress.note(text);
  const lockTimeoutMs = (lockTimeout ?? session.stack.apply.lockTimeoutSeconds) * 1000;
  // Held from before planning until applyPlan takes it over (fresh plans only), heartbeated meanwhile.
  let lock: LockHandle | undefined;
  let beat: NodeJS.Timeout | undefined;
  let lockLost: unknown;
  /** Ctrl-C / SIGTERM handling (onInterrupt): from the locks taken before planning (or, for a saved plan, from the apply) until the record is closed. */
  let interrupt: ReturnType<typeof onInterrupt> | undefined;
  try {
    reportDiagnostics(io, mode, session.warnings);
    let plan: PlanDocument;
    if (saved) {
      // Nothing in the file is trusted until its seal, stack id and scope hold (before any lock or request).
      const deployed = session.stack.authority;
      const problems = await checkSavedPlan(saved, { file: planfile!, stack: session.stack.name, record: session.record, sealedByAuthority: deployed !== undefined });
      if (problems.length > 0) throw new FleetError(problems);
      // A deployed stack's authority verifies the seal (its key, not the record's) and from now on approves requests of this plan's members only.
      if (deployed) await (await import('../../../providers/authority-plans.ts')).registerAtAuthority(deployed, env, saved, planfile);
      plan = saved;
    } else {
      // Lock, then plan: the fleets in scope are locked first (waiting up to
      // --lock-timeout for another apply), and the plan is made under those
      // locks, so a waiter plans on what the holder left instead of failing
      // as stale. The plan id is chosen now: the locks name it.
      const planId = randomUUID();
      const fleets = await scopeOf(session, opts);
      if (fleets) {
        let brokeLock = false;
        lock = await lockFleets(session.record, session.stack.name, fleets, {
          actor: defaultActor(),
          planId,
          timeoutMs: lockTimeoutMs,
          onEvent: (e) => {
            if (e.type === 'lock-broken') brokeLock = true;
            progress.onEvent(e);
          },
        });
        // Planning a big stack, or waiting for "yes" on a terminal, may outlast the lease: keep it until applyPlan takes over.
        const held = lock;
        beat = setInterval(() => held.heartbeat().catch((e: unknown) => (lockLost ??= e)), LEASE_BEAT_MS);
        beat.unref();
        // From here a Ctrl-C releases the locks (Node's default would leave them for the lease to expire).
        interrupt = onInterrupt(io, notice);
        await noteInterrupted(io, session, fleets);
        // A dead apply's runs go on at a DMZ client that outlived it (not an embedded one: those died with it).
        if (brokeLock && session.stack.dataCenters.some((dc) => dc.address !== 'embedded')) {
          await awaitStrayEdges(io, session, fleets, interrupt.signal);
        }
      }
      const { planStack, renderText } = await planning();
      const makePlan = async () => {
        const made = await planStack(opts.stack, {
          cwd: io.cwd,
          env,
          id: planId,
          record: session.record,
          loaded: { stack: session.stack, pack: session.pack, fleets: [...session.fleets], diagnostics: session.warnings },
          targets: opts.target,
          excludes: opts.exclude,
          allowDestroy: opts.allowDestroy,
          replace: opts.replace,
        });
        // The loader's warnings were shown with the session; what the planning reported (policy.rule-timeout) is new.
        reportDiagnostics(io, mode, made.diagnostics.filter((d) => !session.warnings.includes(d)));
        return made.plan;
      };
      plan = await makePlan();
      // Every stuck VM has a way out: a VM the plan acts on that its data
      // center no longer holds is recorded as such, and planned again from
      // there (deleted and created again, or created again); one whose cloud
      // id the record lacks, or that its cloud shows powered off while the
      // record holds it in a boot state, is recorded so (checkCloud).
      const acted = plan.changes.filter((c) => c.action !== 'noop' && c.action !== 'create' && c.vmId !== undefined).map((c) => c.vmId!);
      if (acted.length > 0) {
        const rows = (await session.record.getVms(acted)).filter((r) => r !== undefined);
        const gone = await checkCloud(session, rows, { actor: defaultActor() });
        if (gone.length > 0) {
          reportDiagnostics(
            io,
            mode,
            gone.map((g) => diag(g.kind === 'missing' ? 'apply.vm-missing' : 'apply.vm-drift', `${g.detail}; planned again from there.`, { address: g.address })),
          );
          plan = await makePlan();
        }
      }
      if (json) io.stdout.write(`${JSON.stringify({ type: 'plan', planId: plan.id, summary: plan.summary, blocked: plan.blocked, at: new Date().toISOString() })}\n`);
      else io.stdout.write(renderText(plan, { color: useColor(io) }));
    }
    if (interrupt?.signal.aborted) return cancelled(io);
    /** Whether the apply waited at its confirmation prompt (lockLostBeforeApply says so). */
    let asked = false;
    /** Asks on a terminal before a fresh plan is applied (a saved plan, or --yes, is not asked about). */
    const confirmFresh = async (): Promise<void> => {
      if (saved || plan.blocked || opts.yes) return;
      if (!io.stdin.isTTY) {
        throw new FleetError(diag('apply.confirmation-required', 'No terminal to ask for confirmation: run with --yes, or apply a saved plan (`fleet plan --out plan.json` then `fleet apply plan.json`).'));
      }
      // A Ctrl-C at the prompt ends it with "no": cancelled just below, not refused.
      asked = true;
      const yes = await confirm(io, interrupt?.signal);
      if (!yes && !interrupt?.signal.aborted) throw new FleetError(diag('apply.cancelled', 'The answer was not "yes"; nothing was changed.'));
    };
    /**
     * The locks taken before planning still hold, checked now rather than at
     * the next beat (a lock lost in the last seconds of a prompt went on into
     * the apply): else record.lock-lost, saying nothing was changed.
     */
    const stillLocked = async (): Promise<void> => {
      if (lock && !lockLost) await lock.heartbeat().catch((e: unknown) => (lockLost ??= e));
      if (lockLost) throw lockLostBeforeApply(lockLost, asked);
    };
    const changes = plan.changes.filter((c) => c.action !== 'noop').length;
    if (changes === 0) {
      // A fleet's protection and owner are the record's (docs/policy.md), written by applyPlan before its steps: with no
      // member to change, the plan's fleetChanges are written here, or protect: false (or true), or an owner, applied alone
      // would never reach the record. A fresh plan's fleets are locked already; a saved plan's are locked and
      // checked against the record (its basis holds their versions) first.
      let recorded: FleetChange[] = [];
      if (!plan.blocked && plan.fleetChanges?.length) {
        await confirmFresh();
        if (interrupt?.signal.aborted) return cancelled(io);
        await stillLocked();
        const fleets = plan.fleetChanges.map((f) => f.fleet);
        const held = lock ?? (await lockFleets(session.record, session.stack.name, fleets, { actor: defaultActor(), planId: plan.id, timeoutMs: lockTimeoutMs, onEvent: (e) => progress.onEvent(e) }));
        try {
          if (!lock) await noteInterrupted(io, session, fleets);
          // Its `protect` and `owner` events are JSON's; the text says what was recorded in one line below.
          recorded = await applyFleetChanges({
            plan,
            record: session.record,
            fleets,
            owners: ownersOf(session),
            fresh: !saved,
            onEvent: (e) => {
              if (json) progress.onEvent(e);
            },
          });
        } finally {
          if (!lock) await held.release().catch(() => {});
        }
      }
      if (!json && recorded.length > 0) io.stdout.write(`Nothing else to apply; ${recorded.flatMap(recordedPhrases).join(', ')}.\n`);
      else if (!json) io.stdout.write(plan.blocked ? 'Nothing applied: the policy vetoed every change (see the violations above).\n' : 'Nothing to apply.\n');
      // `summary` is the last event of every apply (docs/apply.md): a CI job reads the counts there, here all 0.
      else progress.onEvent({ type: 'summary', planId: plan.id, succeeded: 0, failed: 0, steps: 0, stepsFailed: 0, stepsSkipped: 0, elapsedMs: 0, ...(recorded.length ? { fleetChanges: recorded } : {}) });
      return plan.blocked ? 1 : 0;
    }
    // Every token this apply will present, before anything starts (and before the prompt).
    const missing = plan.blocked ? [] : session.missingTokens(plan.changes.filter((c) => c.action !== 'noop').map((c) => c.dataCenter));
    if (missing.length > 0) throw new FleetError(missing);
    // The admin token, where the protect rule's override: admin makes the authority ask its proof of a deletion this apply overrides.
    if (!plan.blocked && plan.options.allowDestroy.length > 0) {
      const overridden = [...new Set(plan.changes.filter((c) => plan.options.allowDestroy.includes(c.fleet)).map((c) => c.fleet))];
      const rows = overridden.length ? await session.record.listFleets(session.stack.name, overridden) : [];
      const { adminOverridesNeeded } = await import('../../apply/admin-override.ts');
      const needs = adminOverridesNeeded(plan, session.pack, new Set(rows.filter((f) => f.protected).map((f) => f.fleet)));
      if (needs.length > 0 && env.FLEET_ADMIN_TOKEN) {
        // A wrong token was found only by the authority, at the first overridden deletion: after the plan's other changes
        // were applied. A deployed authority checks it now (read-only). The embedded one holds this very FLEET_ADMIN_TOKEN
        // (providers/embedded.ts), so there it cannot be wrong.
        if (session.stack.authority) {
          const { checkAdminAtAuthority } = await import('../../../providers/authority-plans.ts');
          await checkAdminAtAuthority(session.stack.authority, env, session.stack.name, env.FLEET_ADMIN_TOKEN);
        } else {
          // A deployed DMZ client answers to its own authority (its --authority), which the stack does not name: each
          // data center with an overridden deletion is asked to have its authority check the token (POST
          // /v1/admin-check, a proof, never the token), and a wrong token or one no DMZ client could check starts nothing.
          const dcOf = new Map(plan.changes.map((c) => [c.address, c.dataCenter]));
          const remote = [...new Set(needs.map((a) => dcOf.get(a)!))].filter((dc) => session.stack.dataCenters.find((d) => d.name === dc)?.address !== 'embedded');
          if (remote.length > 0) {
            const { checkAdminThroughDmzClients } = await import('../../../providers/admin-check.ts');
            await checkAdminThroughDmzClients({
              providers: session.providers,
              dataCenters: remote,
              stack: session.stack.name,
              adminToken: env.FLEET_ADMIN_TOKEN,
              shown: addressesShown(needs),
              address: needs[0],
            });
          }
        }
      } else if (needs.length > 0) {
        const shown = addressesShown(needs);
        throw new FleetError([
          diag(
            'apply.admin-token-missing',
            `This apply deletes or replaces ${shown} of protected fleets under --allow-destroy, and the stack's protect rule says override: admin: the authority accepts such an override only with a proof made with FLEET_ADMIN_TOKEN, which is not set. Nothing was started. Set FLEET_ADMIN_TOKEN (the admin token the authority holds), or apply without --allow-destroy.`,
            { address: needs[0] },
          ),
        ]);
      }
    }
    if (!saved && !plan.blocked && session.stack.authority) {
      // A deployed stack's authority approves only requests of plans it sealed and registered: a fresh plan goes through both.
      const { registerAtAuthority, sealAtAuthority } = await import('../../../providers/authority-plans.ts');
      plan = { ...plan, seal: await sealAtAuthority(session.stack.authority, env, plan) };
      await registerAtAuthority(session.stack.authority, env, plan);
    }
    await confirmFresh();
    if (interrupt?.signal.aborted) return cancelled(io);
    interrupt ??= onInterrupt(io, notice);
    interrupt.applying();
    let result: ApplyResult;
    /** apply.stopped and its cause: the apply lost its record or its lock mid-way (ApplyStoppedError). */
    let stoppedMidway: Diagnostic[] = [];
    // JSON: the summary event is held until the diagnostics (failures, stopped rollouts) are out, so it is the last event, as the text summary is the last line.
    let summary: ApplyEvent | undefined;
    try {
      await stillLocked();
      clearInterval(beat);
      const held = lock;
      lock = undefined; // applyPlan owns it now, and releases it
      result = await applyPlan({
        plan,
        record: session.record,
        providers: session.providers,
        owners: ownersOf(session),
        ...(env.FLEET_ADMIN_TOKEN ? { adminToken: env.FLEET_ADMIN_TOKEN } : {}),
        parallelism: parallelism ?? session.stack.apply.parallelism,
        lockTimeoutMs,
        onEvent: (e) => {
          if (json && e.type === 'summary') summary = e;
          else progress.onEvent(e);
        },
        signal: interrupt.signal,
        ...(held ? { lock: held } : { onLocked: (fleets) => noteInterrupted(io, session, fleets) }),
      }).catch((err: unknown) => {
        if (err instanceof ApplyStoppedError) {
          stoppedMidway = err.diagnostics;
          return err.result;
        }
        throw stoppedMidApply(err);
      });
    } finally {
      // Signals from here on stop nothing; the handler stays until the locks are released and the record closed.
      interrupt.settle();
      progress.finish();
    }
    const failures = memberFailures(result.failed, !json);
    const stopped: Diagnostic[] = result.rollouts.flatMap((r) => {
      if (!r.stopped || result.notStarted > 0) return [];
      const done = r.succeeded.length ? `Done: ${shortList(r.succeeded)}` : 'Done: none';
      return [
        diag(
          'apply.rollout-stopped',
          `Rollout of ${r.fleet} stopped after wave ${r.wavesRun} of ${r.waves}: ${r.stopped.reason}. ${done}; failed: ${shortList(r.failed)}; left untouched: ${shortList(r.stopped.notStarted)}. Fix the cause, then run \`fleet apply\` again to bring the failed members back and continue.`,
          { address: r.fleet },
        ),
      ];
    });
    if (json) {
      reportDiagnostics(io, mode, [...failures, ...stopped, ...stoppedMidway]);
      if (summary) {
        progress.onEvent(summary);
        progress.finish();
      }
    } else {
      const { shown, note } = textFailures(failures);
      reportDiagnostics(io, mode, [...shown, ...stopped]);
      if (note) io.stderr.write(`\n${note}`);
      // Last of the diagnostics, right above the summary: what happened to the apply as a whole.
      reportDiagnostics(io, mode, stoppedMidway);
    }
    if (!json) {
      for (const r of result.rollouts) {
        if (r.stopped && result.notStarted === 0) io.stdout.write(`Rollout ${r.fleet}: stopped after wave ${r.wavesRun} of ${r.waves}; ${r.stopped.notStarted.length} member${r.stopped.notStarted.length === 1 ? '' : 's'} left untouched.\n`);
        else if (!r.stopped) io.stdout.write(`Rollout ${r.fleet}: ${r.waves} wave${r.waves === 1 ? '' : 's'} done${r.failed.length ? `, ${r.failed.length} failed` : ''}.\n`);
      }
    }
    // The summary comes last, after the failures (on stderr): a CI log's or a terminal's last line counts what happened, however many members failed.
    if (!json) io.stdout.write(`\n${applySummary(result)}\n`);
    // Not 130: nobody asked it to stop. The diagnostic says what is left and how to go on.
    if (stoppedMidway.length > 0) return 1;
    if (result.notStarted > 0) {
      io.stderr.write(`Run \`fleet apply\` again to carry out the ${result.notStarted} change${result.notStarted === 1 ? '' : 's'} not started.\n`);
      return INTERRUPTED_EXIT;
    }
    // Interrupted once every member had started: nothing was left out, but the
    // apply was stopped on request (the signal's notice said so), so it exits
    // as interrupted, as a CI job cancelled mid-apply expects (128 + SIGINT).
    if (result.interrupted) return INTERRUPTED_EXIT;
    return failures.length || stopped.length ? 1 : 0;
  } finally {
    clearInterval(beat);
    progress.finish();
    try {
      await lock?.release().catch(() => {});
      await session.close();
    } finally {
      interrupt?.dispose();
    }
  }
}

/** What the apply of fleet settings alone wrote, as its one line says it. */
function recordedPhrases(f: FleetChange): string[] {
  return [...(f.protect ? [`recorded protect: ${f.protect.to} for fleet ${f.fleet}`] : []), ...(f.owner ? [`recorded owner ${escapeUnseen(f.owner.to)} for fleet ${f.fleet}`] : [])];
}

/** The owner of each fleet with a spec, as the spec says (a new fleet's row gets it: recordFleets). */
function ownersOf(session: StackSession): Record<string, string> {
  return Object.fromEntries(session.fleets.map((f) => [f.name, f.owner]));
}

/**
 * The fleets a fresh plan will cover (the planner's own scope rule over the
 * specs and the record's fleets, less those a program manages: planStack
 * leaves them alone or refuses), to lock before planning; undefined when a
 * --target / --exclude names no fleet (planStack then says which).
 */
async function scopeOf(session: StackSession, opts: ApplyCliOptions): Promise<string[] | undefined> {
  const recordFleets = await session.record.listFleets(session.stack.name);
  const { resolveScope, programFleets } = await planning();
  const specs = session.fleets.map((f) => f.name);
  const scope = resolveScope(
    specs,
    recordFleets.map((f) => f.fleet),
    opts.target,
    opts.exclude,
  );
  return scope.unknown.length > 0 ? undefined : programFleets(scope.fleets, specs, recordFleets).fleets;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * The last line of a text apply: what happened, counted as it happened.
 * Steps are the requests carried out (done), the one each failed member
 * stopped at, and those sent with it but never carried out.
 */
export function applySummary(r: Pick<ApplyResult, 'succeeded' | 'failed' | 'notStarted' | 'interrupted' | 'elapsedMs' | 'steps' | 'stepsFailed' | 'stepsSkipped'>): string {
  const secs = (r.elapsedMs / 1000).toFixed(1);
  const failed = r.failed.length;
  const outcome = r.notStarted > 0 || r.interrupted ? 'interrupted' : failed ? (r.succeeded === 0 ? 'failed' : 'finished with failures') : 'complete';
  const members = [`${plural(r.succeeded, 'VM')} changed`, `${failed} failed`];
  if (r.notStarted > 0) members.push(`${r.notStarted} not started`);
  const steps = [`${plural(r.steps, 'step')} done`];
  if (r.stepsFailed) steps.push(`${r.stepsFailed} failed`);
  if (r.stepsSkipped) steps.push(`${r.stepsSkipped} not carried out`);
  return `Apply ${outcome}: ${members.join(', ')}; ${steps.join(', ')}; in ${secs}s.`;
}

/** The addresses an admin-token refusal names: the first five, then how many more (`web/0, web/1, web/2, web/3, web/4 and 3 more`). */
function addressesShown(addresses: readonly string[]): string {
  return addresses.length > 5 ? `${addresses.slice(0, 5).join(', ')} and ${addresses.length - 5} more` : addresses.join(', ');
}
