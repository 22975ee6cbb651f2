import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderGraph, type GraphFormat } from './graph.ts';
import { loadPack } from './load.ts';
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
