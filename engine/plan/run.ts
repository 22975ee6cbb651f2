// planStack: the I/O around the pure core. Loads the stack, reads only what
// the plan needs from the record, computes the plan, closes the record.
// A narrowed plan (--target / --exclude) reads the rows of the fleets in its
// scope and, for every other fleet, only what its VMs use per data center
// (FleetRecord.usage): enough for owner quotas and data center capacity,
// whatever their enforcement, without reading the whole stack.
import { FleetError, diag, hasErrors, type Diagnostic } from '../diags/index.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord, PlanVmRow, UsageRow } from '../record/types.ts';
import { loadStack, type LoadResult } from '../spec/index.ts';
import { computePlan, type PlanOptions } from './planner.ts';
import { resolveScope } from './scope.ts';
import type { PlanDocument } from './types.ts';

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
}

export interface PlanStackResult {
  plan: PlanDocument;
  /** The loader's warnings (errors throw). */
  diagnostics: Diagnostic[];
  /** Milliseconds per phase, for the benchmark and --verbose output. */
  timings: { load: number; read: number; compute: number };
}

/**
 * Plans a stack. Throws FleetError with the loader's diagnostics when the
 * stack does not load, with plan.unknown-fleet for a --target / --exclude
 * that names no fleet, and with the record's faults.
 */
export async function planStack(stackDir: string, opts: PlanStackOptions = {}): Promise<PlanStackResult> {
  const t0 = performance.now();
  const loaded = opts.loaded ?? (await loadStack(stackDir, { cwd: opts.cwd ?? process.cwd(), env: opts.env ?? process.env }));
  if (hasErrors(loaded.diagnostics) || !loaded.stack || !loaded.pack) {
    throw new FleetError(loaded.diagnostics.length ? loaded.diagnostics : [diag('cli.internal', 'the stack loader returned no stack and no diagnostic')]);
  }
  const { stack, pack, fleets } = loaded;
  const options: PlanOptions = {
    targets: opts.targets ?? [],
    excludes: opts.excludes ?? [],
    allowDestroy: opts.allowDestroy ?? [],
    refresh: opts.refresh ?? false,
  };
  const t1 = performance.now();
  // Plan only reads: a PGlite record an apply holds is read from a copy (openRecord readOnly) instead of waiting for it.
  const record = opts.record ?? (await openRecord(stack.recordUrl, { readOnly: true }));
  let rows: PlanVmRow[];
  let usage: UsageRow[] | undefined;
  const fleetVersions: Record<string, number> = {};
  const owners: Record<string, string> = {};
  try {
    const fleetRows = await record.listFleets(stack.name);
    const specNames = fleets.map((f) => f.name);
    const scope = resolveScope(specNames, fleetRows.map((f) => f.fleet), options.targets, options.excludes);
    if (scope.unknown.length) {
      throw new FleetError(
        scope.unknown.map((name) =>
          diag('plan.unknown-fleet', `no fleet named ${name} is in the specs of stack ${stack.name} or in its record (${record.description}).`, { address: name }),
        ),
      );
    }
    const inScope = new Set(scope.fleets);
    for (const f of fleetRows) {
      owners[f.fleet] = f.owner;
      if (inScope.has(f.fleet)) fleetVersions[f.fleet] = f.version;
    }
    const narrowed = options.targets.length > 0 || options.excludes.length > 0;
    if (narrowed) {
      rows = await record.listPlanVms(stack.name, { fleets: scope.fleets });
      usage = await record.usage(stack.name, { excludeFleets: scope.fleets });
    } else {
      rows = await record.listPlanVms(stack.name);
    }
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
    fleetVersions,
    owners,
    options,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.id ? { id: opts.id } : {}),
  });
  const t3 = performance.now();
  return { plan, diagnostics: loaded.diagnostics.filter((d) => d.severity !== 'error'), timings: { load: t1 - t0, read: t2 - t1, compute: t3 - t2 } };
}
