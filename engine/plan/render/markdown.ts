// The plan as a pull-request comment. GitHub refuses comments over 65,536
// characters, so a large plan is summarised section by section: whole tables
// are dropped (with a note), never cut in the middle.
//
// The first line is a hidden marker naming the stack: a CI job finds its
// earlier comment by it and edits that one instead of adding another on
// every push (examples/github-actions/plan.yml).
import { ACTIONS, type Action, type Change, type PlanDocument } from '../types.ts';
import { planDigest } from '../digest.ts';
import { byName } from '../scope.ts';
import { mdCode, mdCodeCell, mdHtml, mdText } from './escape.ts';
import { SYMBOL, countsPhrase, diffLines, formatPath, groupByFleet, memberList, rolloutLine, summaryLine } from './common.ts';

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

export function renderMarkdown(plan: PlanDocument, opts: MarkdownOptions = {}): string {
  const limit = opts.limit ?? MARKDOWN_LIMIT;
  const head = headSection(plan, opts.planFile);
  const policy = policySection(plan);
  const dcs = dataCenterSection(plan);
  const diagram = diagramSection(plan);
  const rollouts = rolloutSection(plan);
  const fleets = groupByFleet(plan).filter((g) => g.changes.length > 0);
  const details = fleets.map((g) => fleetDetails(g.fleet, g.changes, g.unchanged));

  const full = [head, policy, ...(rollouts ? [rollouts] : []), dcs, diagram, ...(details.length ? ['### Fleets\n', ...details] : [])].join('\n');
  if (full.length <= limit) return full;

  // Too long: fleets become one line each, then the lines that still fit.
  const note = (what: string) =>
    `> **Note:** this plan is too large for one comment (${full.length.toLocaleString('en-US')} characters); ${what}. The JSON plan (\`fleet plan --out\`) has every change.\n`;
  const oneLiners = fleets.map((g) => `- ${SYMBOL[g.changes[0].action]} **${cell(g.fleet)}**: ${countsPhrase(g.changes)}${g.unchanged ? `, ${g.unchanged} unchanged` : ''}`);
  const fixed = [head, note('fleets are summarised, one line each'), policy, ...(rollouts ? [rollouts] : []), dcs, diagram, '### Fleets\n'].join('\n');
  const budget = limit - fixed.length - 200;
  const shown: string[] = [];
  let used = 0;
  for (const line of oneLiners) {
    if (used + line.length + 1 > budget) break;
    shown.push(line);
    used += line.length + 1;
  }
  const rest = oneLiners.length - shown.length;
  const tail = rest > 0 ? `\n_…and ${rest} more fleets with changes, not shown._\n` : '\n';
  const out = `${fixed}${shown.join('\n')}${tail}`;
  if (out.length <= limit) return out;
  // Even the fixed sections are too long (a huge violation list): keep the head and the note only.
  return [head, note('only the summary is shown')].join('\n');
}

/** How to carry out exactly this plan, in one line. */
function howToApply(plan: PlanDocument, planFile: string | undefined): string {
  const s = plan.summary;
  if (plan.blocked) return 'Nothing can be applied until the mandatory violations below are resolved.';
  if (s.create + s.transition + s.update + s.replace + s.delete === 0) return 'Nothing to apply.';
  const file = planFile ? code(`fleet apply ${planFile}`) : '`fleet apply PLANFILE` with the file `fleet plan --out` saved';
  return `To apply exactly this plan: ${file}; it is refused if anything it changes moved in the record since.`;
}

function headSection(plan: PlanDocument, planFile: string | undefined): string {
  const lines = [markdownMarker(plan.stack), `## Plan for stack ${code(plan.stack)}`, '', `**${summaryLine(plan)}**`, ''];
  lines.push(`Plan ${code(plan.id)} · digest ${code(planDigest(plan))}`, '', howToApply(plan, planFile), '');
  lines.push(`Policy pack ${code(plan.policyPack)} · fleets in scope: ${plan.fleets.length ? plan.fleets.map(code).join(', ') : 'none'}`);
  const opts = plan.options;
  if (opts.targets.length) lines.push(`· targets: ${opts.targets.map(code).join(', ')}`);
  if (opts.excludes.length) lines.push(`· excludes: ${opts.excludes.map(code).join(', ')}`);
  if (opts.allowDestroy.length) lines.push(`· allow-destroy: ${opts.allowDestroy.map(code).join(', ')}`);
  lines.push('');
  if (plan.blocked) {
    const n = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
    lines.push(`> [!CAUTION]`, `> Blocked by ${n} mandatory policy violation${n === 1 ? '' : 's'}: this plan cannot be applied.`, '');
  }
  return lines.join('\n');
}

function policySection(plan: PlanDocument): string {
  const { violations, grants } = plan.policy;
  if (!violations.length && !grants.length) return '';
  const lines: string[] = [];
  if (violations.length) {
    lines.push('### Policy violations', '', '| level | policy | address | message | hint |', '| --- | --- | --- | --- | --- |');
    for (const v of violations) lines.push(`| ${v.level} | ${codeCell(v.policy)} | ${codeCell(v.address)} | ${cell(v.message)} | ${cell(v.hint)} |`);
    lines.push('');
  }
  if (grants.length) {
    lines.push('### Grants', '', '| fleet | requested | granted | reason | policy |', '| --- | ---: | ---: | --- | --- |');
    for (const g of grants) lines.push(`| ${codeCell(g.fleet)} | ${g.requested} | ${g.granted} | ${cell(g.reason)} | ${codeCell(g.policy)} |`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Each fleet's rollout: its settings, then one row per wave, in the order they run. */
function rolloutSection(plan: PlanDocument): string {
  const rollouts = plan.rollouts ?? [];
  if (rollouts.length === 0) return '';
  const lines = ['### Rollouts', '', 'Each wave starts once every member of the one before is back in its desired state and ready; the rollout stops at `failureThreshold` failed members.', ''];
  for (const r of rollouts) {
    lines.push(`**${cell(r.fleet)}**: ${rolloutLine(r)} (${cell(r.reason)})`, '', '| wave | members | out of service | surge |', '| ---: | --- | ---: | ---: |');
    for (const w of r.waves) {
      const back = w.returning?.length ? ` (bringing back ${memberList(w.returning, 4)})` : '';
      lines.push(`| ${w.wave} | ${cell(memberList(w.members))}${cell(back)} | ${w.unavailable} | ${w.surge} |`);
    }
    lines.push('');
  }
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

function fleetDetails(fleet: string, changes: Change[], unchanged: number): string {
  const lines = [
    `<details><summary><b>${mdHtml(fleet)}</b>: ${countsPhrase(changes)}${unchanged ? `, ${unchanged} unchanged` : ''}</summary>`,
    '',
    '| | address | action | data center | path | reason |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of changes) {
    const extra = [...diffLines(c), c.action === 'create' && c.placement ? c.placement.summary : '', c.action === 'replace' ? `old: ${formatPath(c.oldPath ?? [])}` : '']
      .filter(Boolean)
      .join('; ');
    const reason = extra && !c.reason.includes(extra) ? `${c.reason} (${extra})` : c.reason;
    lines.push(`| ${SYMBOL[c.action]} | ${codeCell(c.address)}${c.wave !== undefined ? ` (wave ${c.wave})` : ''} | ${c.action} | ${cell(c.dataCenter)} | ${cell(formatPath(c.path))} | ${cell(reason)} |`);
  }
  lines.push('', '</details>', '');
  return lines.join('\n');
}
