// The plan as a pull-request comment. GitHub refuses comments over 65,536
// characters, so over MARKDOWN_LIMIT each table keeps the rows that fit, in
// reading order (violations, grants, rollouts, fleets), and ends with how many
// more it leaves out: "N more changes not shown; see the plan artifact". Every
// cut says what it left out: a rollout whose title is cut is named even when it
// has no wave row to count, and a comment cut to its head names the sections.
//
// The first line is a hidden marker naming the stack: a CI job finds its
// earlier comment by it and edits that one instead of adding another on
// every push (examples/github-actions/plan.yml).
import { ACTIONS, type Action, type Change, type PlanDocument } from '../types.ts';
import { planDigest } from '../digest.ts';
import { byName } from '../scope.ts';
import { mdCode, mdCodeCell, mdHtml, mdText } from './escape.ts';
import { SYMBOL, countsPhrase, createdMembers, diffLines, fleetSettingsLine, formatPath, groupByFleet, hasChanges, memberList, returningPhrases, rolloutLine, summaryLine, type FleetGroup } from './common.ts';

export const MARKDOWN_LIMIT = 65_000;

export interface MarkdownOptions {
  /** Largest output in characters (default 65,000). */
  limit?: number;
  /** The file the plan was saved to (`fleet plan --out`), named in the how-to-apply line. */
  planFile?: string;
}

/**
 * The hidden first line of the comment: `<!-- fleet-plan stack=NAME -->`.
 * One comment per stack per pull request: search the PR's comments for this
 * string and update the one that has it.
 */
export function markdownMarker(stack: string): string {
  return `<!-- fleet-plan stack=${stack.replace(/[^A-Za-z0-9._-]/g, '_')} -->`;
}

// Every string from the plan goes through escape.ts: mdText in prose and
// table cells, mdCode / mdCodeCell for names shown as code, mdHtml inside
// the <summary> element (docs/plan-format.md, "Text from the plan").
const cell = mdText;
const code = mdCode;
const codeCell = mdCodeCell;

/**
 * Characters left for table rows. Unlimited for the whole comment; over the
 * limit each table takes the rows that still fit, in reading order, and once
 * one row does not fit no later row is shown either (a table never shows a
 * later row without the ones before it).
 */
class Budget {
  constructor(private left: number) {}
  private full = false;
  /** Whether `line` (and its newline) fits; if so it is counted. */
  take(line: string): boolean {
    if (this.full || line.length + 1 > this.left) {
      this.full = true;
      return false;
    }
    this.left -= line.length + 1;
    return true;
  }
}

/** Room kept for the "N more … not shown" lines (at most four, each well under 250 characters). */
const OMITTED_RESERVE = 1_000;

/** `_1,234 more changes not shown; see the plan artifact …_`; `what` is plural (`changes`), and one is `1 more change`. */
function notShown(n: number, what: string): string {
  return notShownLine(`${n.toLocaleString('en-US')} more ${n === 1 ? what.replace(/s$/, '') : what}`);
}

/** Where every cut of the comment sends the reader. */
const SEE_ARTIFACT = 'see the plan artifact (the JSON plan `fleet plan --out` saved), which has every one.';

/** `_WHAT not shown; see the plan artifact …_`: every cut of the comment ends with one. */
function notShownLine(what: string): string {
  return `_${what} not shown; ${SEE_ARTIFACT}_`;
}

/** Over the limit, the fleets named in a "not shown" line of rollouts: the first this many, then "…". */
const ROLLOUTS_NAMED = 3;

/** Over the limit, the fleets named in the head's lists (in scope, targets, excludes, allow-destroy): the first this many, then how many more. */
const NAMES_SHOWN = 20;

/** How the head is cut over the limit (absent: whole). */
interface HeadCut {
  /** Room for the "Fleet settings" lines. */
  settings: Budget;
}

export function renderMarkdown(plan: PlanDocument, opts: MarkdownOptions = {}): string {
  const limit = opts.limit ?? MARKDOWN_LIMIT;
  let head = headSection(plan, opts.planFile);
  const dcs = dataCenterSection(plan);
  const diagram = diagramSection(plan);
  const fleets = groupByFleet(plan).filter((g) => g.changes.length > 0);
  const body = (budget: Budget) => {
    const policy = policySection(plan, budget);
    const rollouts = rolloutSection(plan, budget);
    return { policy, rollouts, details: fleetSection(fleets, budget) };
  };
  const join = (note: string, b: ReturnType<typeof body>) => [head, ...(note ? [note] : []), b.policy, ...(b.rollouts ? [b.rollouts] : []), dcs, diagram, ...(b.details ? [b.details] : [])].join('\n');

  const full = join('', body(new Budget(Infinity)));
  if (full.length <= limit) return full;

  // Too long: every table keeps the rows that fit and says how many more it leaves out; so does the head (a fleet
  // settings line per new protected fleet: 2,500 of them made a comment GitHub refuses), with at most a quarter of the room.
  head = headSection(plan, opts.planFile, { settings: new Budget(Math.floor(limit / 4)) });
  const note = `> **Note:** this plan is too large for one comment (${full.length.toLocaleString('en-US')} characters): tables show their first rows and say how many more are not shown. The plan artifact (the JSON plan \`fleet plan --out\` saved) has every change.\n`;
  const fixed = join(note, { policy: '', rollouts: '', details: '' });
  const out = join(note, body(new Budget(limit - fixed.length - OMITTED_RESERVE)));
  if (out.length <= limit) return out;
  // Even the fixed sections are too long (thousands of data centers): keep the head and the note, and say which
  // sections are left out (the note's "tables say how many more" holds for none of them here).
  return [head, note, leftOut(plan, fleets, Boolean(dcs), Boolean(diagram)), ''].join('\n');
}

/** The line that names every section a comment cut to its head leaves out, with how many rows each had. */
function leftOut(plan: PlanDocument, fleets: FleetGroup[], dcs: boolean, diagram: boolean): string {
  const n = (k: number, one: string, many = `${one}s`) => `${k.toLocaleString('en-US')} ${k === 1 ? one : many}`;
  const { violations, grants } = plan.policy;
  const rollouts = plan.rollouts ?? [];
  const waves = rollouts.reduce((k, r) => k + r.waves.length, 0);
  const tables = [dcs ? 'data center' : '', diagram ? 'state path' : ''].filter(Boolean);
  const changes = fleets.reduce((k, g) => k + g.changes.length, 0);
  const parts = [
    violations.length ? n(violations.length, 'policy violation') : '',
    grants.length ? n(grants.length, 'grant') : '',
    rollouts.length ? `${n(rollouts.length, 'rollout')} (${n(waves, 'wave')})` : '',
    tables.length ? `the ${tables.join(' and ')} table${tables.length === 1 ? '' : 's'}` : '',
    changes ? n(changes, 'change') : '',
  ].filter(Boolean);
  return `_Not shown: ${parts.join(', ')}; ${SEE_ARTIFACT}_`;
}

/** How to carry out exactly this plan, in one line. */
function howToApply(plan: PlanDocument, planFile: string | undefined): string {
  if (plan.blocked) return 'Nothing can be applied until the mandatory violations below are resolved.';
  if (!hasChanges(plan)) return 'Nothing to apply.';
  const file = planFile ? code(`fleet apply ${planFile}`) : '`fleet apply PLANFILE` with the file `fleet plan --out` saved';
  return `To apply exactly this plan: ${file}; it is refused if anything it changes moved in the record since.`;
}

function headSection(plan: PlanDocument, planFile: string | undefined, cut?: HeadCut): string {
  const names = (list: readonly string[]) => {
    if (!cut || list.length <= NAMES_SHOWN) return list.map(code).join(', ');
    return `${list.slice(0, NAMES_SHOWN).map(code).join(', ')}, … and ${(list.length - NAMES_SHOWN).toLocaleString('en-US')} more`;
  };
  const lines = [markdownMarker(plan.stack), `## Plan for stack ${code(plan.stack)}`, '', `**${summaryLine(plan)}**`, ''];
  lines.push(`Plan ${code(plan.id)} · digest ${code(planDigest(plan))}`, '', howToApply(plan, planFile), '');
  lines.push(`Policy pack ${code(plan.policyPack)} · fleets in scope: ${plan.fleets.length ? names(plan.fleets) : 'none'}`);
  const opts = plan.options;
  if (opts.targets.length) lines.push(`· targets: ${names(opts.targets)}`);
  if (opts.excludes.length) lines.push(`· excludes: ${names(opts.excludes)}`);
  if (opts.allowDestroy.length) lines.push(`· allow-destroy: ${names(opts.allowDestroy)}`);
  lines.push('');
  if (plan.blocked) {
    const n = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
    lines.push(`> [!CAUTION]`, `> Blocked by ${n} mandatory policy violation${n === 1 ? '' : 's'}: this plan cannot be applied.`, '');
  }
  // A fleet's own settings (its protection and owner in the record): one line each; over the limit, those that fit in the head's room.
  const settings = (plan.fleetChanges ?? []).map((f) => {
    const { mark, text } = fleetSettingsLine(f, code);
    return `- \`${mark}\` fleet ${code(f.fleet)}: ${text}`;
  });
  const shown = cut ? settings.filter((l) => cut.settings.take(l)) : settings;
  if (settings.length) lines.push('### Fleet settings', '', ...shown, ...(shown.length < settings.length ? ['', notShown(settings.length - shown.length, 'fleet settings')] : []), '');
  return lines.join('\n');
}

function policySection(plan: PlanDocument, budget: Budget): string {
  const { violations, grants } = plan.policy;
  if (!violations.length && !grants.length) return '';
  const lines: string[] = [];
  if (violations.length) {
    // Mandatory first (each level in the plan's order): they block the plan, and over the comment limit they are the rows kept.
    const ordered = [...violations.filter((v) => v.level === 'mandatory'), ...violations.filter((v) => v.level !== 'mandatory')];
    const rows = ordered.map((v) => `| ${v.level} | ${codeCell(v.policy)} | ${codeCell(v.address)} | ${cell(v.message)} | ${cell(v.hint)} |`);
    lines.push('### Policy violations', '', ...table(['| level | policy | address | message | hint |', '| --- | --- | --- | --- | --- |'], rows, 'violations', budget), '');
  }
  if (grants.length) {
    const rows = grants.map((g) => `| ${codeCell(g.fleet)} | ${g.requested} | ${g.granted} | ${cell(g.reason)} | ${codeCell(g.policy)} |`);
    lines.push('### Grants', '', ...table(['| fleet | requested | granted | reason | policy |', '| --- | ---: | ---: | --- | --- |'], rows, 'grants', budget), '');
  }
  return lines.join('\n');
}

/** A table's header and the rows the budget has room for, then how many are not shown (no header when none is). */
function table(header: string[], rows: string[], what: string, budget: Budget): string[] {
  const shown = rows.filter((r) => budget.take(r));
  if (shown.length === rows.length) return [...header, ...shown];
  const rest = notShown(rows.length - shown.length, what);
  return shown.length ? [...header, ...shown, '', rest] : [rest];
}

/** Each fleet's rollout: its settings, then one row per wave, in the order they run. */
function rolloutSection(plan: PlanDocument, budget: Budget): string {
  const rollouts = plan.rollouts ?? [];
  if (rollouts.length === 0) return '';
  const lines = ['### Rollouts', '', 'Each wave starts once every member of the one before is back in its desired state and ready; the rollout stops at `failureThreshold` failed members.', ''];
  let hidden = 0;
  /** The rollouts whose title did not fit: a rollout with no wave (it cannot start) has no row to count. */
  const hiddenFleets: string[] = [];
  const created = createdMembers(plan);
  for (const r of rollouts) {
    const rows = r.waves.map((w) => {
      const into = returningPhrases(w, created);
      const back = into.length ? ` (${into.join(', ')})` : '';
      return `| ${w.wave} | ${cell(memberList(w.members))}${cell(back)} | ${w.unavailable} | ${w.surge} |`;
    });
    const title = `**${cell(r.fleet)}**: ${rolloutLine(r)} (${cell(r.reason)})`;
    if (!budget.take(title)) {
      hidden += rows.length;
      hiddenFleets.push(r.fleet);
      continue;
    }
    // No wave (the rollout cannot start; its title says so): no table, whose header alone would show an empty one.
    if (rows.length === 0) {
      lines.push(title, '');
      continue;
    }
    const shown = rows.filter((row) => budget.take(row));
    hidden += rows.length - shown.length;
    lines.push(title, '', '| wave | members | out of service | surge |', '| ---: | --- | ---: | ---: |', ...shown, '');
  }
  if (hiddenFleets.length) {
    const k = hiddenFleets.length;
    const names = hiddenFleets.slice(0, ROLLOUTS_NAMED).map(code).join(', ') + (k > ROLLOUTS_NAMED ? ', …' : '');
    const waves = hidden ? ` and ${hidden.toLocaleString('en-US')} more rollout waves` : '';
    lines.push(notShownLine(`${k.toLocaleString('en-US')} more rollout${k === 1 ? '' : 's'} (fleet${k === 1 ? '' : 's'} ${names})${waves}`), '');
  } else if (hidden) lines.push(notShown(hidden, 'rollout waves'), '');
  return lines.join('\n');
}

function dataCenterSection(plan: PlanDocument): string {
  if (plan.changes.length === 0 && plan.unchanged.length === 0) return '';
  const per = new Map<string, Record<Action, number>>();
  const add = (dc: string, action: Action, n: number) => {
    let row = per.get(dc);
    if (!row) per.set(dc, (row = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<Action, number>));
    row[action] += n;
  };
  for (const c of plan.changes) add(c.dataCenter, c.action, 1);
  for (const u of plan.unchanged) for (const [dc, n] of Object.entries(u.dataCenters)) add(dc, 'noop', n);
  const lines = ['### By data center', '', `| data center | ${ACTIONS.join(' | ')} |`, `| --- |${ACTIONS.map(() => ' ---: |').join('')}`];
  for (const dc of [...per.keys()].sort(byName)) lines.push(`| ${codeCell(dc)} | ${ACTIONS.map((a) => per.get(dc)![a]).join(' | ')} |`);
  lines.push(`| **total** | ${ACTIONS.map((a) => `**${plan.summary[a]}**`).join(' | ')} |`, '');
  return lines.join('\n');
}

/** The diagram edges the plan walks, with how many steps use each. */
function diagramSection(plan: PlanDocument): string {
  const edges = new Map<string, { from: string; to: string; op: string; n: number }>();
  for (const c of plan.changes) {
    for (const s of c.steps) {
      const key = `${s.from}\u0000${s.to}\u0000${s.operation}`;
      const e = edges.get(key);
      if (e) e.n += 1;
      else edges.set(key, { from: s.from, to: s.to, op: s.operation, n: 1 });
    }
  }
  if (edges.size === 0) return '';
  const id = (s: string) => s.replace(/[^A-Za-z0-9_]/g, '_');
  const lines = ['### State paths', '', '```mermaid', 'stateDiagram-v2'];
  const sorted = [...edges.values()].sort((a, b) => byName(a.from, b.from) || byName(a.to, b.to) || byName(a.op, b.op));
  for (const e of sorted) lines.push(`  ${id(e.from)} --> ${id(e.to)}: ${e.op} ×${e.n}`);
  lines.push('```', '');
  return lines.join('\n');
}

/** One `<details>` per fleet with changes, as many change rows as fit, then how many are not shown. */
function fleetSection(fleets: FleetGroup[], budget: Budget): string {
  if (fleets.length === 0) return '';
  const out = ['### Fleets\n'];
  let hidden = 0;
  for (const g of fleets) {
    const summary = `<details><summary><b>${mdHtml(g.fleet)}</b>: ${countsPhrase(g.changes)}${g.unchanged ? `, ${g.unchanged} unchanged` : ''}</summary>`;
    const header = ['', '| | address | action | data center | path | reason |', '| --- | --- | --- | --- | --- | --- |'];
    if (!budget.take(`${summary}\n${header.join('\n')}\n\n</details>\n`)) {
      hidden += g.changes.length;
      continue;
    }
    const rows: string[] = [];
    for (const c of g.changes) {
      const row = changeRow(c);
      if (!budget.take(row)) break;
      rows.push(row);
    }
    hidden += g.changes.length - rows.length;
    out.push([summary, ...header, ...rows, '', '</details>', ''].join('\n'));
  }
  if (hidden) out.push(`${notShown(hidden, 'changes')}\n`);
  return out.join('\n');
}

function changeRow(c: Change): string {
  const extra = [...diffLines(c), c.action === 'create' && c.placement ? c.placement.summary : '', c.action === 'replace' ? `old: ${formatPath(c.oldPath ?? [])}` : '']
    .filter(Boolean)
    .join('; ');
  const reason = extra && !c.reason.includes(extra) ? `${c.reason} (${extra})` : c.reason;
  return `| ${SYMBOL[c.action]} | ${codeCell(c.address)}${c.wave !== undefined ? ` (wave ${c.wave})` : ''} | ${c.action} | ${cell(c.dataCenter)} | ${cell(formatPath(c.path))} | ${cell(reason)} |`;
}
