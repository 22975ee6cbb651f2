// planStack: the I/O around the pure core. Loads the stack, reads only what
// the plan needs from the record, computes the plan, closes the record.
// Whole and narrowed plans (--target / --exclude) read the same way: for the
// fleets in scope, the rows of the members that differ from their spec, the
// others summed in the database (FleetRecord.readPlan, ./shapes.ts); for
// every other fleet, only what its VMs use per data center
// (FleetRecord.usage). Enough for owner quotas and data center capacity,
// whatever their enforcement, without reading every row.
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import { FleetError, diag, hasErrors, quote, type Diagnostic } from '../diags/index.ts';
import { isServerRecord, openRecord, pgliteDir, prepareRecord } from '../record/index.ts';
import type { FleetRecord, PlanVmRow, StackIdentity, UnchangedRow, UsageRow } from '../record/types.ts';
import { loadStack, type LoadResult, type StackInput } from '../spec/index.ts';
import { globTaking } from '../spec/glob.ts';
import { sealPlan } from './integrity.ts';
import { computePlan, type PlanOptions } from './planner.ts';
import { programFleets, resolveScope, targetFleet } from './scope.ts';
import { customPlanRules, planShapes } from './shapes.ts';
import { parseVmAddress } from '../model/index.ts';
import type { LoadedFleet, LoadedStack } from '../spec/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { bootedStates } from '../policy/index.ts';
import type { PlanDocument, PlanSeal } from './types.ts';

export interface PlanStackOptions extends Partial<PlanOptions> {
  /** Folder the stack path is relative to; default process.cwd(). */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  now?: Date;
  id?: string;
  /** An open record to read instead of opening the stack's (left open). */
  record?: FleetRecord;
  /** The stack as loaded already (fleet apply's session), instead of loading it again. */
  loaded?: LoadResult;
  /**
   * Seal the plan with the stack's key in the record (made on first use),
   * for `fleet plan --out`: the plan is going to a file that `fleet apply`
   * will trust only if the seal verifies (./integrity.ts).
   */
  seal?: boolean;
  /**
   * How a deployed stack's plan is sealed (one with an `authority` address):
   * by its authority, with a key the record does not hold (the CLI's
   * providers/authority-plans.ts). Required with `seal` for such a stack.
   */
  sealAtAuthority?: (plan: PlanDocument, authority: NonNullable<LoadedStack['authority']>) => Promise<PlanSeal>;
  /**
   * Where `fleet plan --out` will write the plan: `file` absolute, `shown` as
   * the user gave it. Refused (plan.out-failed) before the record is read
   * when it is one of the files the plan is made from.
   */
  out?: { file: string; shown: string };
}

export interface PlanStackResult {
  plan: PlanDocument;
  /**
   * The loader's warnings (its errors throw), then what the planning
   * reported beside the plan's violations (policy.rule-timeout: a custom
   * rule stopped at its deadline; the plan is blocked by its violation).
   */
  diagnostics: Diagnostic[];
  /** Milliseconds per phase, for the benchmark and --verbose output. */
  timings: { load: number; read: number; compute: number };
}

/**
 * Plans a stack. Throws FleetError with the loader's diagnostics when the
 * stack does not load, with plan.unknown-fleet for a --target / --exclude /
 * --allow-destroy that names no fleet, and with the record's faults.
 */
export async function planStack(stackDir: string, opts: PlanStackOptions = {}): Promise<PlanStackResult> {
  const t0 = performance.now();
  const load = (onlyFleets?: readonly string[]): Promise<LoadResult> =>
    loadStack(stackDir, {
      cwd: opts.cwd ?? process.cwd(),
      env: opts.env ?? process.env,
      ...(onlyFleets ? { onlyFleets } : {}),
      // The record's open starts what it can while the specs load (PGlite's WebAssembly compiles on other threads).
      ...(opts.record ? {} : { onRecordUrl: prepareRecord }),
    });
  // A plan narrowed by --target alone parses only the files that name its
  // fleets (thousands of specs cost seconds of YAML); it loads the whole stack
  // if a targeted fleet is then not found in them (see below).
  const targetsOnly = !opts.loaded && (opts.targets?.length ?? 0) > 0 && (opts.excludes?.length ?? 0) === 0;
  let loaded = opts.loaded ?? (await load(targetsOnly ? [...new Set(opts.targets!.map(targetFleet))] : undefined));
  if (targetsOnly && !hasErrors(loaded.diagnostics) && opts.targets!.some((t) => !loaded.fleets.some((f) => f.name === targetFleet(t)))) {
    // A targeted fleet is in none of the files that spell its name: only the
    // whole stack can tell whether it is gone from the specs (its members to
    // be deleted) or written in a way the text search missed.
    loaded = await load();
  }
  if (hasErrors(loaded.diagnostics) || !loaded.stack || !loaded.pack) {
    throw new FleetError(loaded.diagnostics.length ? loaded.diagnostics : [diag('cli.internal', 'the stack loader returned no stack and no diagnostic')]);
  }
  const { stack, pack, fleets } = loaded;
  if (opts.out) {
    const input = inputAt(opts.out.file, loaded.inputs ?? []);
    if (input) {
      throw new FleetError(
        diag(
          'plan.out-failed',
          `--out ${opts.out.shown} is the ${input.what} ${input.file}, which this plan is made from: writing the plan there would replace it. Write the plan to a file of its own (for example plan.json).`,
          { file: opts.out.shown },
        ),
      );
    }
    // The stack's state folder, or its PGlite record wherever it is: `--out .fleet/record/PG_VERSION` replaced a file
    // of the record, which then no longer opened (record.corrupt) for any command.
    const state = stateFolderAt(opts.out.file, stack);
    if (state !== undefined) {
      throw new FleetError(
        diag(
          'plan.out-failed',
          `--out ${opts.out.shown} is inside ${state}, which holds what fleet keeps of the stack (the record, the simulated data centers, secrets and locks): a plan written there could replace a file of it. Write the plan to a file outside it (for example plan.json).`,
          { file: opts.out.shown },
        ),
      );
    }
    // A new file a specs glob would take: every later load read the plan's JSON as a spec (18 errors, none naming --out).
    const globs = Array.isArray(stack.raw.spec?.specs) ? stack.raw.spec.specs.filter((g): g is string => typeof g === 'string' && g !== '') : [];
    const glob = globs.length > 0 ? await globTaking(opts.out.file, globs, stack.dir) : undefined;
    if (glob !== undefined) {
      throw new FleetError(
        diag(
          'plan.out-failed',
          `--out ${opts.out.shown} is where the stack's specs glob ${quote(glob)} reads fleet specs: the next validate, plan or apply would read the plan there as a spec. Write the plan to a file of its own outside the specs (for example plan.json).`,
          { file: opts.out.shown },
        ),
      );
    }
  }
  const options: PlanOptions = {
    targets: opts.targets ?? [],
    excludes: opts.excludes ?? [],
    allowDestroy: opts.allowDestroy ?? [],
    refresh: opts.refresh ?? false,
    ...(opts.replace?.length ? { replace: [...new Set(opts.replace)] } : {}),
  };
  const t1 = performance.now();
  // Plan only reads: a PGlite record an apply holds is read from a copy (openRecord readOnly) instead of waiting for it.
  // It upgrades a PGlite record (the stack's own folder) but never a PostgreSQL one, which other jobs share: a pull
  // request's plan with a newer dmzfleet would move the record past the version main's jobs use (record.newer-schema
  // there). It is refused instead (record.older-schema) unless only index migrations are missing; an empty database
  // is still made a record (the first plan).
  const server = isServerRecord(stack.recordUrl);
  /** What the planning reports beside the plan: the record's upgrade (here), fleets left to their program (here), custom rules' timeouts (computePlan). */
  const reported: Diagnostic[] = [];
  const record =
    opts.record ??
    (await openRecord(stack.recordUrl, {
      readOnly: true,
      onUpgrade: (note) => reported.push(note),
      ...(server ? { upgrade: false, noUpgradeWhy: '`fleet plan` writes nothing to a PostgreSQL record, which other jobs share' } : {}),
    }));
  let rows: PlanVmRow[];
  let usage: UsageRow[] | undefined;
  let unchanged: UnchangedRow[] = [];
  const fleetVersions: Record<string, number> = {};
  const owners: Record<string, string> = {};
  let identity: StackIdentity | undefined;
  const protectedFleets: string[] = [];
  /** The record's protection of the fleets in scope it has rows of (a fleet change when a spec differs). */
  const fleetProtection: Record<string, boolean> = {};
  try {
    const fleetRows = await record.listFleets(stack.name);
    const specNames = fleets.map((f) => f.name);
    const scope = resolveScope(specNames, fleetRows.map((f) => f.fleet), options.targets, options.excludes);
    // A misspelt --allow-destroy allowed nothing, silently: the plan came out
    // blocked by the protect violation it was meant to allow. A fleet in
    // neither the specs nor the record is refused (with --target alone, only
    // the targeted fleets' specs are loaded: a name outside them is out of
    // scope, where allowing has no effect, so it is let be).
    const known = new Set([...specNames, ...fleetRows.map((f) => f.fleet)]);
    const unknownAllowed = [...new Set(options.allowDestroy)].filter((name) => !known.has(name) && (!targetsOnly || name.includes('/')));
    if (scope.unknown.length || unknownAllowed.length) {
      throw new FleetError([
        ...scope.unknown.map((name) =>
          // --exclude web/1 said "no fleet named web/1 is in the specs … or in its record", of a fleet that is in both.
          options.excludes.includes(name) && parseVmAddress(name)
            ? diag('plan.unknown-fleet', `--exclude takes fleet names, and ${name} is a member address: a member cannot be left out alone; --target the members to plan instead.`, { address: name })
            : diag('plan.unknown-fleet', `no fleet named ${quote(name)} is in the specs of stack ${stack.name} or in its record (${record.description}).`, { address: name }),
        ),
        ...unknownAllowed.map((name) =>
          diag(
            'plan.unknown-fleet',
            `--allow-destroy names no fleet named ${quote(name)}: it is in neither the specs of stack ${stack.name} nor its record (${record.description})${name.includes('/') ? '; --allow-destroy takes a fleet name, and allows it for every member of that fleet' : ''}.`,
            { address: name },
          ),
        ),
      ]);
    }
    // A fleet a program manages (a Pulumi Fleet or Vm) is the program's: left alone with no fleet file, refused with one.
    const programs = programFleets(scope.fleets, specNames, fleetRows);
    if (programs.conflicts.length) {
      throw new FleetError(
        programs.conflicts.map((f) => {
          const spec = fleets.find((s) => s.name === f.fleet);
          return diag(
            'plan.two-managers',
            `fleet ${f.fleet} is declared by a fleet file, and its live VMs in the record (${record.description}) were made by the program ${f.managedBy}, which manages it: one fleet has one manager, or each would change or delete the other's VMs. Nothing was planned. Rename the fleet in the fleet file, or remove it from the program first (\`pulumi destroy\`, or its resource removed and \`pulumi up\`), then apply the file.`,
            { ...(spec?.where ?? {}), address: f.fleet },
          );
        }),
      );
    }
    for (const f of programs.leftAlone) {
      reported.push(
        diag(
          'plan.program-fleet',
          `fleet ${f.fleet} is managed by the program ${f.managedBy} (the record holds its live VMs, and no fleet file declares it): left alone, not planned for deletion. Remove it with the program: \`pulumi destroy\`, or its resource removed and \`pulumi up\`.`,
          { address: f.fleet },
        ),
      );
    }
    scope.fleets = programs.fleets;
    const inScope = new Set(scope.fleets);
    for (const f of fleetRows) {
      owners[f.fleet] = f.owner;
      if (f.protected) protectedFleets.push(f.fleet);
      if (inScope.has(f.fleet)) fleetVersions[f.fleet] = f.version;
      // A program's fleet is the program's (left out of the scope above): its protection is not the plan's to write.
      if (inScope.has(f.fleet) && f.managedBy === null) fleetProtection[f.fleet] = f.protected;
    }
    const read = await record.readPlan(stack.name, { fleets: scope.fleets, shapes: planShapes(pack, fleets, scope.fleets, options) });
    rows = await markDeniedBoots(record, pack, read.rows);
    unchanged = read.unchanged;
    if (fleetRows.some((f) => !inScope.has(f.fleet))) usage = await record.usage(stack.name, { excludeFleets: scope.fleets, ...outsideByOwner(pack) });
    reported.push(...goneDataCenters(stack, rows, read.unchanged));
    const problems = memberProblems(options, rows, fleets, stack.name);
    if (problems.length) throw new FleetError(problems);
    if (opts.seal && !stack.authority) identity = await record.stackIdentity(stack.name, { create: true });
  } finally {
    if (!opts.record) await record.close();
  }
  const t2 = performance.now();
  const plan = computePlan({
    stack,
    pack,
    fleets: [...fleets],
    record: rows,
    ...(usage ? { usage } : {}),
    unchanged,
    fleetVersions,
    owners,
    protectedFleets,
    fleetProtection,
    options,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.id ? { id: opts.id } : {}),
    diagnostics: reported,
  });
  if (identity) plan.seal = sealPlan(plan, identity.sealKey, identity.stackId);
  else if (opts.seal && stack.authority) {
    if (!opts.sealAtAuthority) throw new Error('bug: a deployed stack\'s plan is sealed at its authority, and no sealAtAuthority was given');
    plan.seal = await opts.sealAtAuthority(plan, stack.authority);
  }
  const t3 = performance.now();
  return { plan, diagnostics: [...loaded.diagnostics.filter((d) => d.severity !== 'error'), ...reported], timings: { load: t1 - t0, read: t2 - t1, compute: t3 - t2 } };
}

/**
 * `rows` with bootDenied set on each VM in a failure state, its cloud VM
 * still there (a cloud id), whose latest boot was denied: its DMZ client
 * reported that boot's failure `driver.boot-denied` and the authority denied
 * a boot check of it during that boot (FleetRecord.deniedBoots; a denial
 * alone may be anyone's boot check): the planner deletes and creates it again
 * instead of booting the VM the authority refused (docs/recovery.md,
 * BootFailed). One query, of those few rows only; none when there are none.
 */
async function markDeniedBoots(record: FleetRecord, pack: LoadedPack, rows: PlanVmRow[]): Promise<PlanVmRow[]> {
  const failure = new Set(pack.lifecycle.failure);
  const stuck = rows.filter((r) => failure.has(r.state) && r.cloudId != null && r.retiredAt === null).map((r) => r.id);
  if (stuck.length === 0) return rows;
  const denied = new Set(await record.deniedBoots(stuck, bootedStates(pack.lifecycle)));
  if (denied.size === 0) return rows;
  return rows.map((r) => (denied.has(r.id) ? { ...r, bootDenied: true } : r));
}

/**
 * The input `file` is, by identity (device and inode): a symbolic or hard
 * link to a spec file is that file. `--out specs/web.yaml` (a slip of tab
 * completion) replaced the fleet's spec with the plan's JSON, exit 0.
 */
/**
 * The folder of what fleet keeps of `stack` that `file` lies in, or
 * undefined: the stack's state folder (.fleet: a PGlite record, the
 * simulated data centers, the authority's secret, locks, tokens) and a PGlite
 * record kept elsewhere. Compared by real path, so a link to a folder
 * on the way, or `..`, does not hide it.
 */
function stateFolderAt(file: string, stack: LoadedStack): string | undefined {
  const record = stack.recordUrl.startsWith('pglite://') ? pgliteDir(stack.recordUrl) : undefined;
  const real = realPath(file);
  return [stack.stateDir, ...(record ? [record] : [])].find((folder) => {
    const f = realPath(folder);
    return real === f || real.startsWith(f.endsWith(sep) ? f : f + sep);
  });
}

/** `p`'s real path; for a path that does not exist (yet), its nearest existing folder's real path with the rest joined on. */
function realPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    const parent = dirname(p);
    return parent === p ? p : join(realPath(parent), basename(p));
  }
}

function inputAt(file: string, inputs: readonly StackInput[]): StackInput | undefined {
  const out = statSync(file, { throwIfNoEntry: false });
  if (!out?.isFile()) return undefined;
  return inputs.find((i) => {
    const s = statSync(i.file, { throwIfNoEntry: false });
    return s !== undefined && s.dev === out.dev && s.ino === out.ino;
  });
}

/**
 * How a narrowed plan reads the fleets outside its scope (FleetRecord.usage):
 * per owner and data center, which is all quotas and capacity count of them
 * (a fleet outside the scope is never sized by this plan, and its members
 * count under the owner its record row holds: PlanState.settleOwners). Per
 * fleet, as before, while the pack has custom plan rules: they may read
 * `ctx.usage`.
 */
function outsideByOwner(pack: LoadedPack) {
  if (customPlanRules(pack).length > 0) return {};
  return { byOwner: true };
}

/**
 * --target and --replace member addresses that name no member: --replace
 * needs a live VM, --target a live VM or an index the spec's count asks for.
 * A --replace whose fleet is out of the plan's scope would be silently
 * ignored, so it is refused too.
 */
function memberProblems(options: PlanOptions, rows: readonly PlanVmRow[], fleets: readonly LoadedFleet[], stack: string): Diagnostic[] {
  // Nothing to check without member addresses; the sets below cost seconds on a record of a million VMs.
  if (!options.targets.some((t) => parseVmAddress(t)) && !options.replace?.length) return [];
  const live = new Set(rows.filter((r) => !r.deposed && r.retiredAt === null).map((r) => r.address));
  const count = new Map(fleets.map((f) => [f.name, f.count]));
  const out: Diagnostic[] = [];
  for (const t of options.targets) {
    const a = parseVmAddress(t);
    if (!a || live.has(t) || a.index < (count.get(a.fleet) ?? 0)) continue;
    out.push(diag('plan.unknown-member', `--target ${t}: fleet ${a.fleet} of stack ${stack} has no member ${a.index} in the record, and its spec asks for ${count.get(a.fleet) ?? 0}.`, { address: t }));
  }
  const scope = new Set(rows.map((r) => r.fleet));
  for (const t of options.replace ?? []) {
    const a = parseVmAddress(t);
    if (!a) {
      out.push(diag('plan.unknown-member', `--replace takes a member address such as web/3, not ${quote(t)}.`, { address: t }));
    } else if (!live.has(t)) {
      const why = scope.has(a.fleet) || options.targets.length + options.excludes.length === 0 ? 'is not a live VM in the record' : 'is outside the plan\'s --target / --exclude scope';
      out.push(diag('plan.unknown-member', `--replace ${t}: ${t} ${why}; only an existing member can be replaced.`, { address: t }));
    } else if (!count.has(a.fleet)) {
      // A live VM the plan deletes is no member its spec wants: the --replace was accepted and the VM deleted.
      out.push(diag('plan.unknown-member', `--replace ${t}: fleet ${a.fleet} is in no spec of stack ${stack}, so the plan deletes ${t}; only a member its fleet's spec still wants can be replaced.`, { address: t }));
    } else if (a.index >= count.get(a.fleet)!) {
      const n = count.get(a.fleet)!;
      const members = n === 0 ? 'no members' : n === 1 ? `one member, ${a.fleet}/0` : `members ${a.fleet}/0 to ${a.fleet}/${n - 1}`;
      out.push(diag('plan.unknown-member', `--replace ${t}: fleet ${a.fleet} has count ${n} (${members}), so the plan deletes ${t}; only a member its fleet's spec still wants can be replaced.`, { address: t }));
    }
  }
  return out;
}

/**
 * One warning per data center that live VMs of the record are in but stack.yaml no longer lists (plan.data-center-gone):
 * no plan can reach them. Before, `fleet plan` said "No changes" of them, and a plan that deleted one stopped `fleet
 * apply` with "No DMZ client for data center …; check the stack's dataCenters", naming no way out. The rows read are
 * named by address; members the record summed as unchanged (UnchangedRow) by fleet, with `fleet state list`.
 */
function goneDataCenters(stack: { name: string; dataCenters: readonly { name: string }[] }, rows: readonly PlanVmRow[], unchanged: readonly UnchangedRow[]): Diagnostic[] {
  const listed = new Set(stack.dataCenters.map((d) => d.name));
  const byDc = new Map<string, { addresses: string[]; summed: number; fleets: Set<string> }>();
  const of = (dc: string) => {
    let e = byDc.get(dc);
    if (!e) byDc.set(dc, (e = { addresses: [], summed: 0, fleets: new Set() }));
    return e;
  };
  for (const r of rows) if (!listed.has(r.dataCenter)) of(r.dataCenter).addresses.push(r.address);
  for (const u of unchanged) {
    if (listed.has(u.dataCenter) || u.vms === 0) continue;
    const e = of(u.dataCenter);
    e.summed += u.vms;
    e.fleets.add(u.fleet);
  }
  return [...byDc].map(([dc, { addresses, summed, fleets }]) => {
    const n = addresses.length + summed;
    const named = addresses.slice(0, 5).join(', ') + (addresses.length > 5 ? `, and ${addresses.length - 5} more` : '');
    const counted = summed > 0 ? `${summed} of fleet${fleets.size === 1 ? '' : 's'} ${[...fleets].sort().join(', ')}, \`fleet state list\` names them` : '';
    const which = [named, counted].filter((x) => x !== '').join('; ');
    const rm = addresses.length > 0 ? `\`fleet state rm ${addresses[0]}\`` : '`fleet state rm ADDRESS`';
    const them = n === 1 ? 'it' : 'them';
    return diag(
      'plan.data-center-gone',
      `${n} live VM${n === 1 ? '' : 's'} of the record (${which}) live in data center ${quote(dc)}, which stack ${stack.name}'s dataCenters no longer list: no plan can reach ${them}, so ${n === 1 ? 'it is' : 'they are'} left as ${n === 1 ? 'it is' : 'they are'}, and a change to one stops \`fleet apply\` (apply.no-client). Add ${dc} back to stack.yaml to change or delete ${them} there, or forget each with ${rm} (its VM stays in ${dc}, to delete there by hand): the next apply creates a member its spec still wants again in a listed data center.`,
      addresses.length > 0 ? { address: addresses[0] } : { address: [...fleets].sort()[0] },
    );
  });
}
