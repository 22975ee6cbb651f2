// The plan for a terminal. Only displays the document; never decides anything.
import type { Change, PlanDocument } from '../types.ts';
import { SYMBOL, countsPhrase, diffLines, formatPath, groupByFleet, rolloutLine, summaryLine, waveLine } from './common.ts';

export interface TextOptions {
  /** ANSI colours; the CLI passes useColor(io), which honours NO_COLOR. */
  color?: boolean;
}

const ANSI = { reset: '\x1b[0m', bold: '\x1b[1m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', magenta: '\x1b[35m', cyan: '\x1b[36m' };
type Paint = keyof typeof ANSI;

const ACTION_COLOR: Record<Change['action'], Paint> = {
  create: 'green',
  delete: 'red',
  update: 'yellow',
  replace: 'magenta',
  transition: 'cyan',
  noop: 'dim',
};

export function renderText(plan: PlanDocument, opts: TextOptions = {}): string {
  const paint = (c: Paint, s: string) => (opts.color ? `${ANSI[c]}${s}${ANSI.reset}` : s);
  const out: string[] = [];
  const scope = plan.fleets.length === 1 ? '1 fleet' : `${plan.fleets.length} fleets`;
  out.push(`Stack ${plan.stack}, policy pack ${plan.policyPack}, ${scope} in scope.`);
  const narrowed = [
    plan.options.targets.length ? `targets: ${plan.options.targets.join(', ')}` : '',
    plan.options.excludes.length ? `excludes: ${plan.options.excludes.join(', ')}` : '',
    plan.options.allowDestroy.length ? `allow-destroy: ${plan.options.allowDestroy.join(', ')}` : '',
  ].filter(Boolean);
  if (narrowed.length) out.push(narrowed.join('; '));
  out.push('');

  for (const g of groupByFleet(plan)) {
    if (g.changes.length === 0) continue;
    const tail = g.unchanged ? `, ${g.unchanged} unchanged` : '';
    out.push(paint('bold', `Fleet ${g.fleet}`) + ` (${countsPhrase(g.changes)}${tail})`);
    for (const c of g.changes) out.push(...changeLines(c, paint));
    const rollout = plan.rollouts?.find((r) => r.fleet === g.fleet);
    if (rollout) {
      out.push(`  Rollout: ${rolloutLine(rollout)}`);
      out.push(`      (${rollout.reason})`);
      for (const w of rollout.waves) out.push(`    wave ${w.wave}: ${waveLine(w)}`);
    }
    out.push('');
  }

  if (plan.policy.grants.length) {
    out.push(paint('bold', 'Grants'));
    for (const gr of plan.policy.grants) out.push(`  ${gr.fleet}: ${gr.reason} [${gr.policy}]`);
    out.push('');
  }
  if (plan.policy.violations.length) {
    out.push(paint('bold', 'Policy violations'));
    for (const v of plan.policy.violations) {
      const level = paint(v.level === 'mandatory' ? 'red' : 'yellow', v.level);
      out.push(`  ${level} ${v.policy} at ${v.address}: ${v.message}`);
      out.push(`      hint: ${v.hint}`);
    }
    out.push('');
  }
  if (plan.blocked) {
    const n = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
    out.push(paint('red', `Blocked: ${n} mandatory policy violation${n === 1 ? '' : 's'}; this plan cannot be applied.`));
  }
  out.push(paint('bold', summaryLine(plan)));
  return `${out.join('\n')}\n`;
}

function changeLines(c: Change, paint: (c: Paint, s: string) => string): string[] {
  const mark = paint(ACTION_COLOR[c.action], SYMBOL[c.action].padEnd(3));
  const where = c.action === 'delete' ? `from ${c.dataCenter}` : `in ${c.dataCenter}`;
  const wave = c.wave !== undefined ? ` (wave ${c.wave})` : '';
  const lines = [`  ${mark} ${c.address} ${c.action} ${where}${wave}: ${c.reason}`];
  const pad = '        ';
  if (c.action === 'update') {
    const at = c.steps.find((s) => s.from === s.to);
    const path = c.path.map((s) => s);
    if (at) path.splice(path.indexOf(at.from) + 1, 0, `[${at.operation}]`);
    lines.push(`${pad}path: ${formatPath(path)}`);
  } else {
    lines.push(`${pad}path: ${formatPath(c.path)}`);
  }
  if (c.action === 'replace') {
    lines.push(`${pad}old:  ${formatPath(c.oldPath ?? [])}`);
    lines.push(`${pad}order: ${c.replaceOrder === 'create-before-delete' ? 'create the new VM, then delete the old one' : 'delete the old VM, then create the new one'}`);
  }
  for (const d of diffLines(c)) lines.push(`${pad}${d}`);
  if (c.action === 'create' || c.action === 'replace') {
    lines.push(`${pad}${c.action === 'create' ? 'image' : 'new VM'}: ${c.image.logical} (${c.image.real ?? 'not in catalog'}), ${c.size.cpu} cpu, ${c.size.memoryGiB} GiB, ${c.size.diskGiB} GiB disk`);
  }
  if (c.action === 'create' && c.placement) lines.push(`${pad}placement: ${c.placement.summary}`);
  return lines;
}
