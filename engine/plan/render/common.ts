import { byName } from '../scope.ts';
import type { Action, Change, FleetChange, PlanDocument, Rollout, RolloutWave } from '../types.ts';

/** How each action is marked, in text and markdown alike. */
export const SYMBOL: Record<Action, string> = {
  create: '+',
  delete: '-',
  update: '~',
  replace: '-/+',
  transition: '»',
  noop: ' ',
};

/** `PoweredOff » PoweredOn » Starting » Running` */
export function formatPath(path: readonly string[]): string {
  return path.join(' » ');
}

/** How many members the plan changes (noops left out). */
export function memberChanges(plan: PlanDocument): number {
  const s = plan.summary;
  return s.create + s.transition + s.update + s.replace + s.delete;
}

/** Whether applying the plan changes anything: a member, or a fleet's own setting (`fleetChanges`). */
export function hasChanges(plan: PlanDocument): boolean {
  return memberChanges(plan) > 0 || (plan.fleetChanges?.length ?? 0) > 0;
}

/** The settings a fleet change changes, `[name, from, to]` each, protect first: what the "Fleet settings" lines show. */
/**
 * A fleet-settings line's mark and settings, the way every renderer shows
 * them (`fmt` quotes a value): a new fleet's (no row in the record yet,
 * `new`) as what it will hold, `+` and `protect true`, like a create; a
 * fleet with a row's as a change, `~` and `protect false -> true`.
 */
export function fleetSettingsLine(f: FleetChange, fmt: (value: string) => string): { mark: '+' | '~'; text: string } {
  const text = fleetSettings(f)
    .map(([k, from, to]) => (f.new ? `${k} ${fmt(to)}` : `${k} ${fmt(from)} -> ${fmt(to)}`))
    .join('; ');
  return { mark: f.new ? '+' : '~', text };
}

export function fleetSettings(f: FleetChange): [setting: string, from: string, to: string][] {
  const out: [string, string, string][] = [];
  if (f.protect) out.push(['protect', String(f.protect.from), String(f.protect.to)]);
  if (f.owner) out.push(['owner', f.owner.from, f.owner.to]);
  return out;
}

/**
 * The closing line every renderer ends with. A plan with no change is not
 * always a record that matches the specs: the policy may have vetoed every
 * change the specs ask for (a quota of 0, no data center that fits), and
 * then the line says so; nor when --target / --exclude left no fleet in
 * scope (`--target web --exclude web`), which compares nothing; nor beside
 * advisory findings, which may say where they differ.
 */
export function summaryLine(plan: PlanDocument): string {
  const s = plan.summary;
  // A change of protect or owner alone is a change (apply writes it): it is counted, not "No changes".
  const fleets = (n: number) => `${n} fleet${n === 1 ? '' : 's'}`;
  const protect = plan.fleetChanges?.filter((f) => f.protect).length ?? 0;
  const owner = plan.fleetChanges?.filter((f) => f.owner).length ?? 0;
  const settings = [protect ? `protect changes for ${fleets(protect)}` : '', owner ? `owner changes for ${fleets(owner)}` : ''].filter(Boolean);
  const counts = `Plan: ${s.create} to create, ${s.transition} to transition, ${s.update} to update, ${s.replace} to replace, ${s.delete} to delete`;
  if (settings.length > 0) return `${counts}; ${settings.join(', ')}.`;
  if (memberChanges(plan) === 0) {
    const vetoes = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
    if (plan.fleets.length === 0 && plan.options.targets.length + plan.options.excludes.length > 0) {
      return 'No changes: --target and --exclude leave no fleet in scope, so nothing was compared with the record.';
    }
    if (vetoes > 0) return `No changes: the policy vetoed what the specs ask for (${vetoes} mandatory violation${vetoes === 1 ? '' : 's'}). The record does not match the specs.`;
    // An advisory finding may say where the record and the specs differ with nothing to change (members that never
    // move, left in a data center their fleet may no longer use).
    const findings = plan.policy.violations.length;
    if (findings > 0) return `No changes to make; ${findings} advisory policy finding${findings === 1 ? '' : 's'} to review.`;
    return 'No changes. The record matches the specs.';
  }
  return `${counts}.`;
}

export interface FleetGroup {
  fleet: string;
  changes: Change[];
  unchanged: number;
}

/** The plan's changes grouped by fleet in plan order, with each fleet's unchanged members counted (`unchanged`). */
export function groupByFleet(plan: PlanDocument): FleetGroup[] {
  const groups = new Map<string, FleetGroup>();
  const group = (fleet: string) => {
    let g = groups.get(fleet);
    if (!g) groups.set(fleet, (g = { fleet, changes: [], unchanged: 0 }));
    return g;
  };
  for (const c of plan.changes) group(c.fleet).changes.push(c);
  for (const u of plan.unchanged) group(u.fleet).unchanged += u.count;
  return [...groups.values()].sort((a, b) => byName(a.fleet, b.fleet));
}

/** "2 to create, 1 to delete" for a list of changes (noops left out). */
export function countsPhrase(changes: readonly Change[]): string {
  const order: Action[] = ['create', 'transition', 'update', 'replace', 'delete'];
  const n = new Map<Action, number>();
  for (const c of changes) n.set(c.action, (n.get(c.action) ?? 0) + 1);
  return order
    .filter((a) => n.has(a))
    .map((a) => `${n.get(a)} to ${a}`)
    .join(', ');
}

export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return '(not recorded)';
  if (Array.isArray(v)) return v.length ? v.join(', ') : 'none';
  if (typeof v === 'object') {
    const s = v as Record<string, unknown>;
    if ('cpu' in s && 'memoryGiB' in s && 'diskGiB' in s) return `${s.cpu} cpu, ${s.memoryGiB} GiB, ${s.diskGiB} GiB disk`;
    return JSON.stringify(v);
  }
  return String(v);
}

/** One line per field of a change's diff: `image: ubuntu-22.04 -> ubuntu-24.04`. */
export function diffLines(c: Change): string[] {
  return Object.entries(c.diff ?? {}).map(([k, d]) => `${k}: ${formatValue(d.from)} -> ${formatValue(d.to)}`);
}

/** `web/0, web/1, web/2` — long lists shortened to their first few and a count. */
export function memberList(addresses: readonly string[], max = 8): string {
  if (addresses.length <= max) return addresses.join(', ');
  return `${addresses.slice(0, max).join(', ')}, … (${addresses.length} in all)`;
}

/** One line of a rollout's settings: `4 waves; maxUnavailable 3, maxSurge 0, failureThreshold 1`. */
export function rolloutLine(r: Rollout): string {
  // No wave: the rollout cannot start (a violation of the plan says why), not "0 waves".
  const waves = r.waves.length === 0 ? 'no wave can start (the plan is blocked: see its violations)' : `${r.waves.length} wave${r.waves.length === 1 ? '' : 's'}`;
  return `${waves}; maxUnavailable ${r.maxUnavailable}, maxSurge ${r.maxSurge}, failureThreshold ${r.failureThreshold}`;
}

/** The addresses a plan creates (RolloutWave.returning holds them beside the members it brings back). */
export function createdMembers(plan: PlanDocument): Set<string> {
  return new Set(plan.changes.filter((c) => c.action === 'create').map((c) => c.address));
}

/**
 * The members a wave puts into service before it takes any out
 * (RolloutWave.returning), by what happens to them: `bringing back web/3`
 * for members out of service whose VM comes back (a resumed rollout's
 * failed ones), `creating web/4, web/5` for members with no VM (a higher
 * count's, a lost one's), which are created, not brought back. `created`:
 * the plan's creates (createdMembers).
 */
export function returningPhrases(w: RolloutWave, created: ReadonlySet<string>): string[] {
  const all = w.returning ?? [];
  const back = all.filter((a) => !created.has(a));
  const made = all.filter((a) => created.has(a));
  return [...(back.length ? [`bringing back ${memberList(back, 4)}`] : []), ...(made.length ? [`creating ${memberList(made, 4)}`] : [])];
}

/**
 * What one wave does: `web/0, web/1 (2 out of service, 1 by a surge VM
 * first)`; a wave that only puts members into service (a resumed rollout's
 * failed ones, a higher count's new ones): `bringing back web/0, creating
 * web/4 (no other member out of service)`. `created`: the plan's creates
 * (createdMembers).
 */
export function waveLine(w: RolloutWave, created: ReadonlySet<string> = new Set()): string {
  const into = returningPhrases(w, created);
  if (w.members.length === 0 && into.length) {
    return `${into.join(', ')} (no other member out of service${w.surge ? `, ${w.surge} replaced by a surge VM first` : ''})`;
  }
  const parts = [`${w.unavailable} out of service`];
  if (w.surge) parts.push(`${w.surge} replaced by a surge VM first`);
  parts.push(...into);
  return `${memberList(w.members)}${w.members.length ? ' ' : ''}(${parts.join(', ')})`;
}
