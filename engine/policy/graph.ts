// Rendering the lifecycle diagram for people: mermaid (docs, PR comments)
// and Graphviz dot. Requestable states are bold / double circles, terminal
// states grey boxes, failure states red, so the three stay distinguishable.
import type { LoadedPack } from './types.ts';

export type GraphFormat = 'mermaid' | 'dot';
export const GRAPH_FORMATS: readonly GraphFormat[] = ['mermaid', 'dot'];

const label = (op: string): string => (op === 'none' ? '' : op);

/** Mermaid ids cannot hold every character a state name may; keep word characters only. */
const mermaidId = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');

export function renderMermaid(pack: LoadedPack): string {
  const lc = pack.lifecycle;
  const lines = ['stateDiagram-v2', `    %% ${pack.name}@${pack.version}`];
  for (const s of lc.states) if (mermaidId(s) !== s) lines.push(`    state "${s}" as ${mermaidId(s)}`);
  lines.push(`    [*] --> ${mermaidId(lc.initial)}`);
  for (const e of lc.edges) {
    const l = label(e.operation);
    lines.push(`    ${mermaidId(e.from)} --> ${mermaidId(e.to)}${l ? `: ${l}` : ''}`);
  }
  for (const t of lc.terminal) lines.push(`    ${mermaidId(t)} --> [*]`);
  lines.push('    classDef requestable font-weight:bold,stroke-width:3px');
  lines.push('    classDef terminal fill:#ddd,stroke:#555');
  lines.push('    classDef failure fill:#fdd,stroke:#c00,color:#900');
  const cls = (name: string, states: readonly string[]): void => {
    if (states.length) lines.push(`    class ${states.map(mermaidId).join(',')} ${name}`);
  };
  cls('requestable', lc.requestable);
  cls('terminal', lc.terminal);
  cls('failure', lc.failure);
  return `${lines.join('\n')}\n`;
}

const q = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

export function renderDot(pack: LoadedPack): string {
  const lc = pack.lifecycle;
  const lines = [`digraph ${q(`${pack.name}@${pack.version}`)} {`, '  rankdir=LR;', '  node [shape=ellipse, fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];'];
  lines.push('  "__initial" [shape=point, label=""];');
  for (const s of lc.states) {
    const attrs: string[] = [];
    if (lc.requestable.includes(s)) attrs.push('shape=doublecircle', 'style=bold');
    if (lc.terminal.includes(s)) attrs.push('shape=box', 'style=filled', 'fillcolor=gray85');
    if (lc.failure.includes(s)) attrs.push('color=red', 'fontcolor=red');
    lines.push(`  ${q(s)}${attrs.length ? ` [${attrs.join(', ')}]` : ''};`);
  }
  lines.push(`  "__initial" -> ${q(lc.initial)};`);
  for (const e of lc.edges) {
    const l = label(e.operation);
    lines.push(`  ${q(e.from)} -> ${q(e.to)}${l ? ` [label=${q(l)}]` : ''};`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

export function renderGraph(pack: LoadedPack, format: GraphFormat): string {
  return format === 'dot' ? renderDot(pack) : renderMermaid(pack);
}
