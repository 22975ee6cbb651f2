// The plan for a terminal. Only displays the document; never decides anything.
// Every string from the plan goes through `visible` (escape.ts): an owner or a
// rule's message holding ESC would otherwise drive the reader's terminal or CI
// log (clear it, recolour it), and a newline would forge a line of the plan.
import { visible as v } from './escape.ts';
import type { Change, PlanDocument } from '../types.ts';
import { SYMBOL, countsPhrase, createdMembers, diffLines, fleetSettingsLine, formatPath, groupByFleet, rolloutLine, summaryLine, waveLine } from './common.ts';

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
  out.push(`Stack ${v(plan.stack)}, policy pack ${v(plan.policyPack)}, ${scope} in scope.`);
  const narrowed = [
    plan.options.targets.length ? `targets: ${v(plan.options.targets.join(', '))}` : '',
    plan.options.excludes.length ? `excludes: ${v(plan.options.excludes.join(', '))}` : '',
    plan.options.allowDestroy.length ? `allow-destroy: ${v(plan.options.allowDestroy.join(', '))}` : '',
  ].filter(Boolean);
  if (narrowed.length) out.push(narrowed.join('; '));
  out.push('');

  // A fleet's own settings (its protection and owner in the record), which apply writes before any step.
  if (plan.fleetChanges?.length) {
    out.push(paint('bold', 'Fleet settings'));
    for (const f of plan.fleetChanges) {
      const { mark, text } = fleetSettingsLine(f, v);
      out.push(`  ${paint(mark === '+' ? 'green' : 'yellow', mark)} fleet ${v(f.fleet)}: ${text}`);
    }
    out.push('');
  }

  // Only wave lines read it: a first import's 100,000 creates need no set when no fleet rolls out.
  const created = plan.rollouts?.length ? createdMembers(plan) : new Set<string>();
  for (const g of groupByFleet(plan)) {
    if (g.changes.length === 0) continue;
    const tail = g.unchanged ? `, ${g.unchanged} unchanged` : '';
    out.push(paint('bold', `Fleet ${v(g.fleet)}`) + ` (${countsPhrase(g.changes)}${tail})`);
    for (const c of g.changes) out.push(...changeLines(c, paint));
    const rollout = plan.rollouts?.find((r) => r.fleet === g.fleet);
    if (rollout) {
      out.push(`  Rollout: ${rolloutLine(rollout)}`);
      out.push(`      (${v(rollout.reason)})`);
      for (const w of rollout.waves) out.push(`    wave ${w.wave}: ${v(waveLine(w, created))}`);
    }
    out.push('');
  }

  if (plan.policy.grants.length) {
    out.push(paint('bold', 'Grants'));
    for (const gr of plan.policy.grants) out.push(`  ${v(gr.fleet)}: ${v(gr.reason)} [${v(gr.policy)}]`);
    out.push('');
  }
  if (plan.policy.violations.length) {
    out.push(paint('bold', 'Policy violations'));
    for (const f of plan.policy.violations) {
      const level = paint(f.level === 'mandatory' ? 'red' : 'yellow', f.level);
      out.push(`  ${level} ${v(f.policy)} at ${v(f.address)}: ${v(f.message)}`);
      out.push(`      hint: ${v(f.hint)}`);
    }
    out.push('');
  }
  if (plan.blocked) {
    const n = plan.policy.violations.filter((f) => f.level === 'mandatory').length;
    out.push(paint('red', `Blocked: ${n} mandatory policy violation${n === 1 ? '' : 's'}; this plan cannot be applied.`));
  }
  out.push(paint('bold', summaryLine(plan)));
  return `${out.join('\n')}\n`;
}

function changeLines(c: Change, paint: (c: Paint, s: string) => string): string[] {
  const mark = paint(ACTION_COLOR[c.action], SYMBOL[c.action].padEnd(3));
  const where = c.action === 'delete' ? `from ${v(c.dataCenter)}` : `in ${v(c.dataCenter)}`;
  const wave = c.wave !== undefined ? ` (wave ${c.wave})` : '';
  const lines = [`  ${mark} ${v(c.address)} ${c.action} ${where}${wave}: ${v(c.reason)}`];
  const pad = '        ';
  if (c.action === 'update') {
    const at = c.steps.find((s) => s.from === s.to);
    const path = c.path.map((s) => s);
    if (at) path.splice(path.indexOf(at.from) + 1, 0, `[${at.operation}]`);
    lines.push(`${pad}path: ${v(formatPath(path))}`);
  } else {
    lines.push(`${pad}path: ${v(formatPath(c.path))}`);
  }
  if (c.action === 'replace') {
    lines.push(`${pad}old:  ${v(formatPath(c.oldPath ?? []))}`);
    lines.push(`${pad}order: ${c.replaceOrder === 'create-before-delete' ? 'create the new VM, then delete the old one' : 'delete the old VM, then create the new one'}`);
  }
  for (const d of diffLines(c)) lines.push(`${pad}${v(d)}`);
  if (c.action === 'create' || c.action === 'replace') {
    lines.push(`${pad}${c.action === 'create' ? 'image' : 'new VM'}: ${v(c.image.logical)} (${v(c.image.real ?? 'not in catalog')}), ${c.size.cpu} cpu, ${c.size.memoryGiB} GiB, ${c.size.diskGiB} GiB disk`);
  }
  if (c.action === 'create' && c.placement) lines.push(`${pad}placement: ${v(c.placement.summary)}`);
  return lines;
}
