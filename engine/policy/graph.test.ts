import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderGraph, type GraphFormat } from './graph.ts';
import { buildLifecycle } from './lifecycle.ts';
import { loadPack } from './load.ts';
import type { LoadedPack } from './types.ts';
import { DEFAULT_PACK_DIR } from './testdata/fixtures.ts';

// Golden files: UPDATE_GOLDEN=1 npx vitest run engine/policy/graph.test.ts rewrites them; review the diff.
const golden = (name: string) => fileURLToPath(new URL(`./testdata/golden/${name}`, import.meta.url));

async function expectGolden(name: string, actual: string): Promise<void> {
  if (process.env.UPDATE_GOLDEN) await writeFile(golden(name), actual);
  expect(actual).toBe(await readFile(golden(name), 'utf8'));
}

describe('policy graph of the default pack', () => {
  const cases: { format: GraphFormat; file: string }[] = [
    { format: 'mermaid', file: 'default.mmd' },
    { format: 'dot', file: 'default.dot' },
  ];
  it.each(cases)('$format matches $file', async ({ format, file }) => {
    const { pack } = await loadPack(DEFAULT_PACK_DIR);
    await expectGolden(file, renderGraph(pack!, format));
  });

  it('marks requestable, terminal and failure states distinctly', async () => {
    const { pack } = await loadPack(DEFAULT_PACK_DIR);
    const dot = renderGraph(pack!, 'dot');
    expect(dot).toContain('"Running" [shape=doublecircle, style=bold]');
    expect(dot).toContain('"Deleted" [shape=box, style=filled, fillcolor=gray85]');
    expect(dot).toContain('"BootFailed" [color=red, fontcolor=red]');
    const mmd = renderGraph(pack!, 'mermaid');
    expect(mmd).toContain('class Running,PoweredOff requestable');
    expect(mmd).toContain('class Deleted terminal');
    expect(mmd).toContain('class CreateFailed,BootFailed failure');
  });
});

/**
 * A state name is any string. Mermaid ids kept only word characters, so
 * `Being-Created` and `Being_Created` became one node (the diagram drew two
 * states as one, with both's edges), a quote in a name ended the label
 * early (`state "Say "hi"" as …`, which mermaid cannot parse), a state
 * named like a mermaid keyword (`state`, `end`) broke the diagram, and a
 * newline in the pack's name left its `%%` comment. In dot, a state named
 * `__initial` was the initial marker's node.
 */
describe('policy graph: state names that need escaping', () => {
  const packOf = (states: string[], name = 'odd'): LoadedPack => {
    const [first, ...rest] = states;
    const last = rest[rest.length - 1];
    const lifecycle = buildLifecycle({
      states: [...states, 'Gone'],
      initial: first,
      terminal: ['Gone'],
      requestable: [last],
      transitions: [...states.slice(1).map((s, i) => ({ from: states[i], to: s, operation: 'none' })), { from: last, to: 'Gone', operation: 'deleteVm' }],
    });
    return { name, version: '1', dir: '/p', file: '/p/policy.yaml', lifecycle, images: {}, rules: new Map() };
  };

  /** The mermaid id of each state: `state "label" as id` declarations, else the name itself. */
  function mermaidIds(text: string, states: string[]): Map<string, string> {
    const declared = new Map<string, string>();
    for (const m of text.matchAll(/^ {4}state "([^"]*)" as (\S+)$/gm)) declared.set(m[1], m[2]);
    const unescape = (s: string) => s.replace(/#quot;/g, '"').replace(/#35;/g, '#').replace(/#10;/g, '\n').replace(/#13;/g, '\r');
    const byLabel = new Map([...declared].map(([label, id]) => [unescape(label), id]));
    return new Map(states.map((s) => [s, byLabel.get(s) ?? s]));
  }

  const states = ['Requested', 'Being-Created', 'Being_Created', 'Say "hi"', 'state', 'end', 'a#b', 'two\nlines', 'Up'];

  it('mermaid: one distinct id per state, every label parseable', () => {
    const text = renderGraph(packOf(states), 'mermaid');
    const ids = mermaidIds(text, [...states, 'Gone']);
    expect(new Set(ids.values()).size).toBe(states.length + 1);
    for (const id of ids.values()) {
      expect(id).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
      expect(['state', 'end', 'note', 'class', 'classDef', 'direction']).not.toContain(id);
    }
    // Every line is one statement: no label broke out onto a line of its own.
    for (const line of text.trimEnd().split('\n').slice(1)) expect(line).toMatch(/^ {4}(%%|state "[^"\n]*" as \w+$|\S+ --> \S+|classDef |class )/);
    // Each edge joins the ids of its two states.
    expect(text).toContain(`    ${ids.get('Being-Created')} --> ${ids.get('Being_Created')}\n`);
  });

  it("mermaid: a pack name with a newline stays in its comment", () => {
    const text = renderGraph(packOf(['A', 'B'], 'x\nclass A evil'), 'mermaid');
    expect(text.split('\n')[1]).toMatch(/^ {4}%% /);
    expect(text).not.toMatch(/^class A evil/m);
  });

  it('dot: a state named __initial is not the initial marker', () => {
    const text = renderGraph(packOf(['Requested', '__initial', 'Up']), 'dot');
    const marker = /^ {2}"([^"]+)" \[shape=point, label=""\];$/m.exec(text)?.[1];
    expect(marker).toBeDefined();
    expect(marker).not.toBe('__initial');
    expect(text).toContain(`  "${marker}" -> "Requested";`);
    expect(text).toContain('  "Requested" -> "__initial";');
  });
});
