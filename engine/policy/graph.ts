// Rendering the lifecycle diagram for people: mermaid (docs, PR comments)
// and Graphviz dot. Requestable states are bold / double circles, terminal
// states grey boxes, failure states red, so the three stay distinguishable.
import type { LoadedPack } from './types.ts';

export type GraphFormat = 'mermaid' | 'dot';
export const GRAPH_FORMATS: readonly GraphFormat[] = ['mermaid', 'dot'];

const label = (op: string): string => (op === 'none' ? '' : op);

/** Words mermaid's state diagrams read as keywords: never a state's id. */
const MERMAID_KEYWORDS = new Set(['state', 'note', 'end', 'direction', 'class', 'classdef', 'style', 'click', 'as', 'scale', 'hide', 'left', 'right', 'of', 'default']);
const PLAIN_ID = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A mermaid id per state, distinct. A state name is any string: a name that
 * is a plain id and no keyword is its own id; any other gets an id of its
 * own (`s_` and the name's word characters, a number when taken) and is
 * declared with its name as label. (Keeping only word characters made
 * `Being-Created` and `Being_Created` one node.)
 */
function mermaidIds(states: readonly string[]): Map<string, string> {
  const ids = new Map<string, string>();
  const taken = new Set<string>();
  for (const s of states) {
    if (PLAIN_ID.test(s) && !MERMAID_KEYWORDS.has(s.toLowerCase())) {
      ids.set(s, s);
      taken.add(s);
    }
  }
  for (const s of states) {
    if (ids.has(s)) continue;
    const base = `s_${s.replace(/[^A-Za-z0-9_]/g, '_')}`;
    let id = base;
    for (let n = 2; taken.has(id); n++) id = `${base}_${n}`;
    ids.set(s, id);
    taken.add(id);
  }
  return ids;
}

/** A state's name as a mermaid label: entity codes for what would end the label or the line. */
const mermaidLabel = (s: string): string => s.replace(/#/g, '#35;').replace(/"/g, '#quot;').replace(/\n/g, '#10;').replace(/\r/g, '#13;');

/** Text in a `%%` comment: one line. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ');

export function renderMermaid(pack: LoadedPack): string {
  const lc = pack.lifecycle;
  const ids = mermaidIds(lc.states);
  const mermaidId = (s: string): string => ids.get(s) ?? s;
  const lines = ['stateDiagram-v2', `    %% ${oneLine(`${pack.name}@${pack.version}`)}`];
  for (const s of lc.states) if (mermaidId(s) !== s) lines.push(`    state "${mermaidLabel(s)}" as ${mermaidId(s)}`);
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
  // The initial marker's node: a name no state has.
  let initial = '__initial';
  while (lc.states.includes(initial)) initial = `_${initial}`;
  lines.push(`  ${q(initial)} [shape=point, label=""];`);
  for (const s of lc.states) {
    const attrs: string[] = [];
    if (lc.requestable.includes(s)) attrs.push('shape=doublecircle', 'style=bold');
    if (lc.terminal.includes(s)) attrs.push('shape=box', 'style=filled', 'fillcolor=gray85');
    if (lc.failure.includes(s)) attrs.push('color=red', 'fontcolor=red');
    lines.push(`  ${q(s)}${attrs.length ? ` [${attrs.join(', ')}]` : ''};`);
  }
  lines.push(`  ${q(initial)} -> ${q(lc.initial)};`);
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
