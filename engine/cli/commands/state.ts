import { hostname, userInfo } from 'node:os';
import type { Command } from 'commander';
import { FleetError, diag, escapeUnseen, fail, quote, sortDiagnostics, suggest, unseenProblem, visible, type Diagnostic } from '../../diags/index.ts';
import { isFleetName, parseVmAddress } from '../../model/index.ts';
import type { FleetRecord, HistoryRow, LockRow, SqlRecord, VmRow } from '../../record/index.ts';
import { holderGone, lockHolder } from '../../record/locks.ts';
import { modeOf, printDiagnostics, runCommand, writeJson, type CliIO, type OutputMode } from '../io.ts';
import { formatOption, loaderEnv, recordUrlOption, stackOption } from '../options.ts';
import type { RegisterCommand } from './types.ts';

/** The options every record-reading command takes. */
export interface RecordCliOptions {
  stack: string;
  recordUrl?: string;
  format: string;
}

/**
 * Opens the record of the stack in `opts.stack` (resolved against io.cwd;
 * --record-url / FLEET_RECORD_URL overrides the file), runs `fn`, and closes
 * it. Only the stack file must be valid: reading the record does not need
 * valid fleet specs, so the loader's diagnostics about the specs and pack
 * are not shown here (`fleet validate` shows them).
 */
export async function withStackRecord<T>(
  io: CliIO,
  opts: RecordCliOptions,
  fn: (record: SqlRecord, stack: string) => Promise<T>,
  /** A command that only reads: a PGlite record an apply holds is read from a copy instead of waiting (openRecord readOnly). */
  access: { readOnly?: boolean } = {},
): Promise<T> {
  // Loaded when a command runs, not for `fleet --version` (engine/cli/main.ts).
  const [stack, { openRecord, requireExistingRecord }] = await Promise.all([loadStackFile(io, opts), import('../../record/index.ts')]);
  // These commands never make a record: a mistyped URL would answer from a new, empty one ("0 VMs").
  requireExistingRecord(stack.recordUrl);
  // A writer (state rm, unlock) upgrades an older record, and says so on stderr (record.upgraded); readers never do.
  const record = await openRecord(stack.recordUrl, { ...access, existing: true, onUpgrade: (note) => printDiagnostics(io, [note]) });
  try {
    return await fn(record, stack.name);
  } finally {
    await record.close();
  }
}

/** The stack file of `opts.stack` alone (its name and record URL, --record-url applied): the fleet specs and pack may be invalid. */
export async function loadStackFile(io: CliIO, opts: RecordCliOptions): Promise<{ name: string; recordUrl: string }> {
  const { loadStack } = await import('../../spec/index.ts');
  const loaded = await loadStack(opts.stack, { cwd: io.cwd, env: loaderEnv(io, opts), stackOnly: true });
  if (!loaded.stack) {
    const errors: Diagnostic[] = loaded.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length === 0) throw new Error(`bug: loadStack gave no stack and no error for ${opts.stack}`);
    throw new FleetError(errors);
  }
  return loaded.stack;
}

/**
 * A VM at rest: in the state its last apply asked for, and not deposed. Its recorded desired state is where it is
 * headed (a spec edited since is a change `fleet plan` shows, not state); only a VM between states (a change under
 * way, or stuck half-way: a delete whose power-off failed) is given what the specs ask of it.
 */
function atRest(v: VmRow): boolean {
  return !v.deposed && v.state === v.desiredState;
}

/**
 * What the plan wants of each VM not at rest, for the DESIRED column of
 * `fleet state list` and `desired state` of `fleet state show` (and
 * desiredState in their JSON). The record's desired_state is written by the apply that created or
 * last changed a VM, never by a delete: a member whose fleet's count was
 * lowered, stuck half-way out, was listed as still wanted Running. From the
 * specs, as the planner decides membership (docs/planning.md):
 *
 * | the VM                                                   | desired                      |
 * | -------------------------------------------------------- | ---------------------------- |
 * | deposed (the old VM of a create-before-delete replace)    | the pack's terminal state    |
 * | of a fleet no spec declares (fleet files manage it)       | the pack's terminal state    |
 * | of a fleet a program manages (no fleet file)              | the record's (left alone)    |
 * | at an index at or past its fleet's count                  | the pack's terminal state    |
 * | a member its spec wants                                   | the spec's state             |
 *
 * The stack's specs and pack must load without error; otherwise (a spec
 * being edited) undefined, and the record's column is shown as it is.
 */
export interface Wanted {
  state: string;
  /** Why it differs from the spec's member rule: shown by `fleet state show`. */
  why?: string;
}
async function planWants(io: CliIO, opts: RecordCliOptions, fleets?: readonly string[]): Promise<((v: VmRow, managedBy: string | null) => Wanted) | undefined> {
  const { loadStack } = await import('../../spec/index.ts');
  const load = (only?: readonly string[]) => loadStack(opts.stack, { cwd: io.cwd, env: loaderEnv(io, opts), ...(only ? { onlyFleets: only } : {}) });
  // Narrowed to the fleets asked about (--fleet, the VM shown): only their files are parsed, so `state list --fleet F`
  // on a stack of thousands of fleet files costs one file's parse, not all (issue 20: ≤ 0.3 s on a 1M-VM record). A
  // fleet not found that way may still be spelt with YAML escapes in a file left unparsed: the whole stack decides.
  let loaded = await load(fleets);
  if (fleets && loaded.pack && fleets.some((f) => !loaded.fleets.some((l) => l.name === f))) loaded = await load();
  if (!loaded.pack || loaded.diagnostics.some((d) => d.severity === 'error')) return undefined;
  const terminal = loaded.pack.lifecycle.terminal[0];
  const specs = new Map(loaded.fleets.map((f) => [f.name, f]));
  return (v, managedBy) => {
    if (v.deposed) return { state: terminal, why: 'deposed by a replace: deleted once its replacement runs' };
    const spec = specs.get(v.fleet);
    if (!spec) return managedBy !== null ? { state: v.desiredState, why: `fleet ${v.fleet} is managed by ${managedBy}` } : { state: terminal, why: `fleet ${v.fleet} is in no spec` };
    if (v.index >= spec.count) return { state: terminal, why: `fleet ${v.fleet} has count ${spec.count}` };
    return { state: spec.state };
  };
}

/** Prints a record command's result: `doc` (plus `diagnostics: []`) in JSON mode, else `text()`. */
export function printResult(io: CliIO, mode: OutputMode, doc: Record<string, unknown>, text: () => string, diagnostics: Diagnostic[] = []): void {
  if (mode === 'json') {
    writeJson(io, { ...doc, diagnostics: sortDiagnostics([...diagnostics]) });
    return;
  }
  printDiagnostics(io, diagnostics);
  io.stdout.write(text());
}

/** Simple aligned columns for text tables; a cell's unseen characters are escaped (a detail may come from a data center). */
export function table(cells: string[][]): string {
  if (cells.length === 0) return '';
  const rows = cells.map((r) => r.map(escapeUnseen));
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n') + '\n';
}

function vmTable(vms: VmRow[]): string {
  return table([
    ['ADDRESS', 'NAME', 'DATA CENTER', 'STATE', 'DESIRED', 'IMAGE', 'VERSION', 'CLOUD ID'],
    // A deposed VM (the old VM of a create-before-delete replace) shares its address with its replacement: marked.
    ...vms.map((v) => [v.deposed ? `${v.address} (deposed)` : v.address, v.name, v.dataCenter, v.state, v.desiredState, v.realImage ?? v.image, String(v.version), v.cloudId ?? '-']),
  ]);
}

function showVm(v: VmRow, wanted: Wanted | undefined): string {
  const rows: [string, string][] = [
    ['address', v.address],
    ['id', v.id],
    ['name', v.name],
    ['fleet', v.fleet],
    ['data center', v.dataCenter],
    ['state', v.state],
    ['desired state', wanted ? `${wanted.state}${wanted.why ? ` (${wanted.why})` : ''}` : `${v.desiredState} (as last applied: the stack's specs do not load)`],
    ['image', v.realImage ? `${v.image} (${v.realImage})` : v.image],
    ['size', `${v.size.cpu} cpu, ${v.size.memoryGiB} GiB memory, ${v.size.diskGiB} GiB disk`],
    ['encrypted disk', v.encryptedDisk ? 'yes' : 'no'],
    ['cloud id', v.cloudId ?? '-'],
    ['spec hash', v.specHash],
    ['version', String(v.version)],
    ['created', v.createdAt],
    ['updated', v.updatedAt],
  ];
  if (v.retiredAt) rows.push(['retired', v.retiredAt]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, val]) => `${`${k}:`.padEnd(w + 2)}${val}`).join('\n') + '\n';
}

/**
 * What a lock listed by `fleet state list` still does. A lock is kept in the
 * record until it is released or taken over, so one whose lease ran out, or
 * whose apply was killed on this host, was listed like a live one: the
 * operator could not tell a running apply from a dead one's leftovers.
 */
export function lockStatus(l: Pick<LockRow, 'expiresAt' | 'host' | 'pid' | 'lockId'>, now = Date.now()): string {
  if (Date.parse(l.expiresAt) <= now) return 'lease expired: the next lock takes it over';
  if (holderGone(l)) return `holder gone: the next apply breaks it (or fleet unlock ${l.lockId})`;
  return 'held';
}

/**
 * `fleet state list` and `fleet state show ADDRESS`: what the record holds
 * for a stack. Read-only; locks held on the stack's fleets are shown too so
 * a blocked apply can be explained (and `fleet unlock`ed).
 */
export const registerState: RegisterCommand = (program: Command, io, setExit) => {
  const state = program.command('state').description('Show what the record holds (VMs, their states and versions, fleet locks), or forget a VM.');

  state
    .command('list')
    .description('List the live VMs of the stack (and the fleet locks held).')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--fleet <name...>', 'only these fleets')
    .addOption(formatOption())
    .action(async (opts: RecordCliOptions & { fleet?: string[] }) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(
          io,
          () =>
            withStackRecord(io, opts, async (record, stack) => {
              const scope = opts.fleet ? { fleets: opts.fleet } : {};
              const [rows, fleets, allLocks] = await Promise.all([record.listVms(stack, scope), record.listFleets(stack, opts.fleet), record.listLocks(stack)]);
              const managers = new Map(fleets.map((f) => [f.fleet, f.managedBy]));
              // The specs are read only for the fleets of VMs on their way somewhere (atRest): a stable fleet's list costs
              // the record read alone (issue 20: `state list --fleet F` <= 0.3 s on a 1M record).
              const moving = [...new Set(rows.filter((v) => !atRest(v)).map((v) => v.fleet))];
              const wants = moving.length ? await planWants(io, opts, moving) : undefined;
              const vms = wants ? rows.map((v) => (atRest(v) ? v : { ...v, desiredState: wants(v, managers.get(v.fleet) ?? null).state })) : rows;
              const locks = opts.fleet ? allLocks.filter((l) => opts.fleet!.includes(l.fleet)) : allLocks;
              // A fleet the record does not know answers "0 VMs" as an empty one would: said, with a near name.
              const missing = (opts.fleet ?? []).filter((f, i, all) => all.indexOf(f) === i && !fleets.some((r) => r.fleet === f));
              const known = missing.length ? (await record.listFleets(stack)).map((r) => r.fleet) : [];
              const warnings = missing.map((f) => {
                const near = suggest(f, known);
                return diag('record.fleet-not-found', `stack ${stack} has no fleet ${quote(f)} in the record ${record.description}${near ? `; did you mean ${near}?` : known.length ? ` (it holds ${known.join(', ')})` : ' (it holds no fleet)'}.`, { address: f }, 'warning');
              });
              printResult(io, mode, { stack, record: record.description, vms, fleets, locks }, () => {
                const inFleets = new Set(vms.map((v) => v.fleet)).size;
                let out = vms.length ? `${vmTable(vms)}\n` : '';
                out += `${vms.length} VM${vms.length === 1 ? '' : 's'} in ${inFleets} fleet${inFleets === 1 ? '' : 's'} of stack ${stack} (record ${record.description}).\n`;
                if (!wants && moving.length) out += 'DESIRED is the state last applied: the stack\'s specs do not load (`fleet validate` says why).\n';
                // Fleets a program (a Pulumi Fleet or Vm) manages: fleet plan leaves them alone.
                const managed = fleets.filter((f) => f.managedBy !== null);
                if (managed.length) {
                  out += '\nManaged by a program (fleet plan and fleet apply leave them alone):\n';
                  out += table([['FLEET', 'MANAGED BY'], ...managed.map((f) => [f.fleet, f.managedBy as string])]);
                }
                if (locks.length) {
                  out += '\nLocks:\n';
                  out += table([
                    ['FLEET', 'LOCK ID', 'HOLDER', 'PLAN', 'SINCE', 'LEASE UNTIL', 'STATUS'],
                    ...locks.map((l) => [l.fleet, l.lockId, lockHolder(l), l.planId ?? '-', l.since, l.expiresAt, lockStatus(l)]),
                  ]);
                }
                return out;
              }, warnings);
              return 0;
            }, { readOnly: true }),
          mode,
        ),
      );
    });

  registerStateRm(state, io, setExit);

  state
    .command('show')
    .description('Show one VM of the record and its recent history.')
    .argument('<address>', 'VM address, <fleet>/<index>')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (address: string, opts: RecordCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(
          io,
          () => {
            addressArg(address);
            return withStackRecord(io, opts, async (record, stack) => {
              const row = await record.findVm(stack, address);
              if (!row) {
                fail('record.vm-not-found', `stack ${stack} has no live VM at ${address} in the record ${record.description}.${await notFoundHint(record, stack, address)}`, { address });
              }
              const [wants, [fleetRow], inFleet] = await Promise.all([atRest(row) ? undefined : planWants(io, opts, [row.fleet]), record.listFleets(stack, [row.fleet]), record.listVms(stack, { fleets: [row.fleet] })]);
              const wanted = atRest(row) ? { state: row.desiredState } : wants?.(row, fleetRow?.managedBy ?? null);
              const vm = wanted ? { ...row, desiredState: wanted.state } : row;
              // A replace in progress: the old VM it deposed lives at the same address (shown is the current one).
              const others = inFleet.filter((v) => v.address === address && v.id !== row.id);
              const also = others.map((v) => `Also live at ${address}: VM ${v.id} (${vmRole(v)}, ${v.state}, cloud id ${v.cloudId ?? '-'}).\n`).join('');
              const history = (await record.history(stack, address, { limit: 10 })).filter((h) => h.vmId === vm.id);
              printResult(io, mode, { stack, vm, history }, () => showVm(vm, wanted) + (also ? `\n${also}` : '') + (history.length ? `\nRecent history:\n${historyTable(history)}` : ''));
              return 0;
            }, { readOnly: true });
          },
          mode,
        ),
      );
    });
};

/**
 * `fleet state show|rm`, `history`, `import`: a VM address argument, or a
 * cli.usage error saying what one looks like. Its fleet must be a fleet name:
 * no other names a VM, and the text is shown escaped (an escape sequence or a
 * right-to-left override typed into an address acted on the terminal).
 */
/**
 * What a person who named a VM the record does not hold can do next: the
 * fleet's live members when it has some, else the record's fleets (with the
 * likely one when the name looks mistyped), and the command that lists them.
 * Reads the fleet's rows only (and the fleet rows when it has none), never
 * the whole stack.
 */
export async function notFoundHint(record: Pick<FleetRecord, 'listVms' | 'listFleets'>, stack: string, address: string): Promise<string> {
  const fleet = parseVmAddress(address)?.fleet ?? address;
  const members = (await record.listVms(stack, { fleets: [fleet] })).map((v) => v.address);
  if (members.length > 0) {
    const sorted = [...new Set(members)].sort((a, b) => (parseVmAddress(a)?.index ?? 0) - (parseVmAddress(b)?.index ?? 0));
    const shown = sorted.length <= 8 ? sorted.join(', ') : `${sorted.slice(0, 3).join(', ')}, … ${sorted[sorted.length - 1]} (${sorted.length})`;
    return ` Fleet ${fleet} has ${sorted.length === 1 ? 'one live member' : 'live members'} ${shown}; \`fleet state list --fleet ${fleet}\` lists them.`;
  }
  const fleets = (await record.listFleets(stack)).map((f) => f.fleet).sort();
  if (fleets.length === 0) return ' The record holds no fleet of this stack yet: `fleet apply` creates them.';
  const likely = suggest(fleet, fleets);
  const named = fleets.length <= 8 ? fleets.join(', ') : `${fleets.slice(0, 8).join(', ')}, …`;
  return ` It holds no live VM of fleet ${fleet}${likely ? ` (did you mean ${likely}?)` : ''}; its fleets: ${named}. \`fleet state list\` shows the VMs.`;
}

export function addressArg(text: string): { fleet: string; index: number } {
  const a = parseVmAddress(text);
  if (!a) fail('cli.usage', `${visible(text)} is not a VM address; an address is <fleet>/<index>, e.g. web/3.`);
  if (!isFleetName(a.fleet)) {
    fail('cli.usage', `${visible(text)} is not a VM address: ${visible(a.fleet)} is no fleet name (lower-case letters, digits and dashes, starting with a letter); an address is <fleet>/<index>, e.g. web/3.`);
  }
  return a;
}

/**
 * Takes the lock of one fleet for a record edit (`state rm`, `import`), so
 * it never changes a VM under a running apply: a held lock is refused at once
 * (record.lock-held names the holder).
 */
export async function withFleetLock<T>(record: FleetRecord, stack: string, fleet: string, actor: string, fn: () => Promise<T>): Promise<T> {
  const lock = await record.acquireLocks(stack, [fleet], { who: actor, host: hostname(), planId: null, pid: process.pid }, { timeoutMs: 0 });
  try {
    return await fn();
  } finally {
    await lock.release().catch(() => {});
  }
}

/**
 * `fleet state rm ADDRESS [--vm ID]`: forget a VM. The record stops tracking it (the
 * row is retired, with a history row, outcome `removed`); its data center is
 * not asked to do anything, so a VM that still runs there keeps running
 * (`fleet import ADDRESS CLOUD_ID` adopts it again). The next plan sees the
 * address empty and creates the member again if its fleet still wants it.
 *
 * While a create-before-delete replace is in progress an address has two
 * live VMs (or more): its replacement and the old VM it deposed. Which one
 * to forget is then the user's to say (--vm, a VM id or cloud id): without
 * it the command is refused naming each (record.vm-ambiguous); it forgot
 * the current one and said nothing of the other.
 */
function registerStateRm(state: Command, io: CliIO, setExit: (code: number) => void): void {
  state
    .command('rm')
    .description('Forget a VM: the record stops tracking it (recorded in history); its data center is not touched.')
    .argument('<address>', 'VM address, <fleet>/<index>')
    .option('--vm <id>', 'the VM to forget, by VM id or cloud id, when the address has more than one (a replace in progress: the current VM and the old one it deposed)')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (address: string, opts: RecordCliOptions & { vm?: string }) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(
          io,
          async () => {
            const { fleet } = addressArg(address);
            if (opts.vm !== undefined && (opts.vm === '' || unseenProblem(opts.vm))) fail('cli.usage', `--vm ${visible(opts.vm)} is not a VM id or cloud id.`);
            return withStackRecord(io, opts, async (record, stack) => {
              const actor = actorName();
              const vm = await withFleetLock(record, stack, fleet, actor, async () => {
                const here = (await record.listVms(stack, { fleets: [fleet] })).filter((v) => v.address === address);
                const chosen = opts.vm === undefined ? here : here.filter((v) => v.id === opts.vm || v.cloudId === opts.vm);
                if (chosen.length === 0 && opts.vm !== undefined) {
                  const there = here.length ? ` (it holds ${here.map((v) => `VM ${v.id}, cloud id ${v.cloudId ?? '-'}`).join('; ')})` : '';
                  fail('record.vm-not-found', `stack ${stack} has no live VM ${opts.vm} at ${address} in the record ${record.description}${there}; nothing to remove.`, { address });
                }
                if (chosen.length === 0) fail('record.vm-not-found', `stack ${stack} has no live VM at ${address} in the record ${record.description}; nothing to remove.${await notFoundHint(record, stack, address)}`, { address });
                if (chosen.length > 1) {
                  const each = chosen
                    .sort((a, b) => Number(a.deposed) - Number(b.deposed))
                    .map((v) => `VM ${v.id} (${vmRole(v)}, ${v.state}, cloud id ${v.cloudId ?? '-'}): \`fleet state rm ${address} --vm ${v.id}\``);
                  fail('record.vm-ambiguous', `${address} has ${chosen.length} live VMs in the record ${record.description}, a replace being in progress: ${each.join('; ')}. Say which to forget with --vm; nothing was removed.`, { address });
                }
                const found = chosen[0];
                const cloud = found.cloudId ? `its VM ${found.cloudId} in ${found.dataCenter} is left as it is` : `${found.dataCenter} holds no VM of it`;
                // One statement retires the row and writes its history row (outcome removed), at the version read:
                // a report landing meanwhile (reports are not fenced) refuses both, never only the retire.
                return record.transitionVm(found.id, found.version, found.state, { actor, outcome: 'removed', detail: `fleet state rm: the record no longer tracks ${address}; ${cloud}` }, { retire: true });
              });
              printResult(io, mode, { stack, removed: vm }, () => {
                const again = vm.cloudId ? ` ${vm.dataCenter} still holds its VM ${vm.cloudId}: \`fleet import ${address} ${vm.cloudId}\` adopts it again, or delete it there.` : '';
                return `Removed ${address} (VM ${vm.id}, ${vm.state}${vm.deposed ? `, ${vmRole(vm)}` : ''}) from the record of stack ${stack}.${again}\n`;
              });
              return 0;
            });
          },
          mode,
        ),
      );
    });
}

/** Which of an address's live VMs `v` is: the current one, or the old one a replace deposed beside it. */
function vmRole(v: Pick<VmRow, 'deposed'>): string {
  return v.deposed ? 'deposed by a replace in progress' : 'the current one';
}

/** Who edits the record by hand: user@host, as apply's actor. */
function actorName(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return `${user}@${hostname()}`;
}

/**
 * The history table. An address that had more than one VM in these rows (a
 * replace: the old VM and its replacement, or a VM forgotten and another
 * made there) gets a VM column (the id's first 8 characters): their rows
 * were interleaved under one address with nothing telling them apart. A
 * failure's error code (history.code, e.g. `driver.boot-denied`) leads its
 * detail in brackets, as a diagnostic's code leads it (`error[…]`).
 */
export function historyTable(rows: HistoryRow[]): string {
  const vmsAt = new Map<string, Set<string>>();
  for (const h of rows) vmsAt.set(h.address, (vmsAt.get(h.address) ?? new Set()).add(h.vmId));
  const several = [...vmsAt.values()].some((ids) => ids.size > 1);
  const vm = (h: HistoryRow) => (several ? [h.vmId.slice(0, 8)] : []);
  return table([
    ['AT', 'ADDRESS', ...(several ? ['VM'] : []), 'FROM', 'TO', 'OUTCOME', 'ACTOR', 'PLAN', 'DETAIL'],
    ...rows.map((h) => [h.at, h.address, ...vm(h), h.from ?? '-', h.to, h.outcome, h.actor, h.planId ?? '-', detailOf(h)]),
  ]);
}

function detailOf(h: HistoryRow): string {
  if (!h.code) return h.detail ?? '';
  return h.detail ? `[${h.code}] ${h.detail}` : `[${h.code}]`;
}
