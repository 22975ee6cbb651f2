// The policy pack's lifecycle diagram as an SVG drawn here (no client-side
// library, nothing downloaded): states in columns by their distance from the
// initial state, edges as arrows labelled with their operation; requestable
// states bold, terminal grey, failure red, as in `fleet policy graph`.
import { escapeHtml } from './html.ts';

export interface DiagramInput {
  states: readonly string[];
  initial: string;
  terminal: readonly string[];
  requestable: readonly string[];
  failure: readonly string[];
  edges: readonly { from: string; to: string; operation: string }[];
}

const BOX_W = 130;
const BOX_H = 34;
const COL = 190;
const ROW = 70;

/** Column of each state: breadth-first distance from the initial state (unreachable ones last). */
function columns(d: DiagramInput): Map<string, number> {
  const col = new Map<string, number>([[d.initial, 0]]);
  const queue = [d.initial];
  for (let i = 0; i < queue.length; i++) {
    for (const e of d.edges) {
      if (e.from === queue[i] && !col.has(e.to)) {
        col.set(e.to, (col.get(queue[i]) ?? 0) + 1);
        queue.push(e.to);
      }
    }
  }
  const last = Math.max(0, ...col.values()) + 1;
  for (const s of d.states) if (!col.has(s)) col.set(s, last);
  return col;
}

export function lifecycleSvg(d: DiagramInput): string {
  const col = columns(d);
  const perCol = new Map<number, string[]>();
  for (const s of d.states) {
    const c = col.get(s) ?? 0;
    perCol.set(c, [...(perCol.get(c) ?? []), s]);
  }
  const pos = new Map<string, { x: number; y: number }>();
  for (const [c, states] of perCol) states.forEach((s, r) => pos.set(s, { x: 20 + c * COL, y: 20 + r * ROW }));
  const rows = Math.max(...[...perCol.values()].map((v) => v.length));
  const isBack = (e: { from: string; to: string }) => (col.get(e.to) ?? 0) <= (col.get(e.from) ?? 0);
  const backEdges = d.edges.filter(isBack);
  // Back edges run below the boxes, each on its own level, so none crosses a box or another's label.
  const below = 20 + rows * ROW;
  const width = 40 + (Math.max(...perCol.keys()) + 1) * COL;
  const height = below + 30 + backEdges.length * 22;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="lifecycle diagram" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
  );
  let level = 0;
  for (const e of d.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const outcome = d.failure.includes(e.to);
    const attrs = `class="edge${outcome ? ' outcome' : ''}" data-from="${escapeHtml(e.from)}" data-to="${escapeHtml(e.to)}" fill="none" stroke="${outcome ? '#c00' : '#555'}" ${outcome ? 'stroke-dasharray="4 3" ' : ''}marker-end="url(#arrow)"`;
    let label: { x: number; y: number };
    if (isBack(e)) {
      const y = below + 12 + level++ * 22;
      const x1 = a.x + BOX_W / 2 + 12;
      const x2 = b.x + BOX_W / 2 - 12;
      parts.push(`<path ${attrs} d="M${x1},${a.y + BOX_H} L${x1},${y} L${x2},${y} L${x2},${b.y + BOX_H}"/>`);
      label = { x: (x1 + x2) / 2, y: y - 3 };
    } else {
      // Forward: from the right side of one box to the left side of the other.
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x;
      const y2 = b.y + BOX_H / 2;
      parts.push(`<path ${attrs} d="M${x1},${y1} L${x2},${y2}"/>`);
      label = { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 5 };
    }
    if (e.operation !== 'none') parts.push(`<text x="${label.x.toFixed(1)}" y="${label.y.toFixed(1)}" text-anchor="middle" fill="#333">${escapeHtml(e.operation)}</text>`);
  }
  for (const s of d.states) {
    const p = pos.get(s)!;
    const fill = d.failure.includes(s) ? '#fdd' : d.terminal.includes(s) ? '#ddd' : '#fff';
    const stroke = d.failure.includes(s) ? '#c00' : '#555';
    const weight = d.requestable.includes(s) ? ' font-weight="bold"' : '';
    const kind = d.failure.includes(s) ? 'failure' : d.terminal.includes(s) ? 'terminal' : d.requestable.includes(s) ? 'requestable' : 'state';
    parts.push(
      `<g class="state ${kind}" data-state="${escapeHtml(s)}"><rect x="${p.x}" y="${p.y}" width="${BOX_W}" height="${BOX_H}" rx="6" fill="${fill}" stroke="${stroke}" stroke-width="${d.requestable.includes(s) ? 3 : 1}"/>` +
        `<text x="${p.x + BOX_W / 2}" y="${p.y + BOX_H / 2 + 4}" text-anchor="middle"${weight}>${escapeHtml(s)}</text></g>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}
