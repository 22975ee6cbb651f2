import { describe, expect, it, vi } from 'vitest';
import { location } from '../diags/index.ts';
import type { Where } from '../diags/index.ts';
import { collectPointers, keyWhere, ownerWhere, parseYaml, valueWhere, type Path, type SourceDoc } from './yaml.ts';

const TOO_DEEP = 'Lists and mappings are nested more than 64 deep here; no field of a fleet, stack or DMZ client file nests that deep. Look for a stray [ or { (or indentation that runs away).';

describe('parseYaml', () => {
  const cases: [string, string, string[]][] = [
    ['valid document', 'a: 1\n', []],
    ['unclosed flow sequence names where it opened', 'a: 1\nb: [x, y\nc: 2\n', ['f.yaml:3:1 Flow sequence in block collection must be sufficiently indented and end with a ] (the [ opened at line 2, column 4).']],
    ['unclosed quote names where it opened', 'a: "x\nb: 2\n', ['f.yaml:3:1 Missing closing "quote (the " opened at line 1, column 4).']],
    // It said only "Map keys must be unique.", not which key or where the other one is.
    ['duplicate key', 'a: 1\na: 2\n', ['f.yaml:2:1 Key "a" is given twice in the same mapping (first at line 1, column 1); keep one.']],
    ['duplicate nested key', 'metadata:\n  name: x\n  owner: t\n  name: y\n', ['f.yaml:4:3 Key "name" is given twice in the same mapping (first at line 2, column 3); keep one.']],
    ['duplicate key in a flow map', 'size: { cpu: 1, cpu: 2 }\n', ['f.yaml:1:17 Key "cpu" is given twice in the same mapping (first at line 1, column 9); keep one.']],
    ['duplicate quoted key', 'a: 1\n"a": 2\n', ['f.yaml:2:1 Key "a" is given twice in the same mapping (first at line 1, column 1); keep one.']],
    ['alias without anchor is reported, not thrown', 'a: 1\nb: *nope\n', ['f.yaml:2:4 Alias *nope has no anchor &nope before it in the same document (anchors do not carry across ---).']],
    ['bad indentation', 'a: 1\n  b: 2\n', ['f.yaml:1:4 Nested mappings are not allowed in compact mappings.']],
    // The record cannot store a NUL: it validated, then `fleet apply` failed with cli.internal.
    ['a NUL in a value', 'a: 1\nowner: "team\\0pay"\n', ['f.yaml:2:8 "team\\u0000pay" holds a NUL character (\\0), which no name, label or value may hold: the record cannot store it.']],
    ['a NUL in a key and in a list item', 'labels: { "t\\0": x }\nl: [a, "b\\0"]\n', ['f.yaml:1:11 "t\\u0000" holds a NUL character (\\0), which no name, label or value may hold: the record cannot store it.', 'f.yaml:2:8 "b\\u0000" holds a NUL character (\\0), which no name, label or value may hold: the record cannot store it.']],
    // Deeper than a few hundred levels, converting the value overflowed the call stack: the diagnostic said
    // "Maximum call stack size exceeded." at a column of no meaning.
    ['lists nested 100 deep', `a: ${'['.repeat(100)}${']'.repeat(100)}\n`, [`f.yaml:1:67 ${TOO_DEEP}`]],
    ['mappings nested 100 deep', `a: ${'{b: '.repeat(100)}1${'}'.repeat(100)}\n`, [`f.yaml:1:${4 + 63 * 4} ${TOO_DEEP}`]],
    ['block mappings nested 100 deep', `${Array.from({ length: 100 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n')} 1\n`, [`f.yaml:65:129 ${TOO_DEEP}`]],
    ['64 levels are read', `a: ${'['.repeat(63)}1${']'.repeat(63)}\n`, []],
  ];
  it.each(cases)('%s', (_name, text, want) => {
    const r = parseYaml(text, 'f.yaml');
    expect(r.diagnostics.map((d) => `${location(d)} ${d.detail}`)).toEqual(want);
  });

  // Deeper than the parser reaches (its own error then), the same diagnostic, inside the nesting.
  it.each([
    ['lists', `a: ${'['.repeat(5000)}${']'.repeat(5000)}\n`],
    ['mappings', `a: ${'{b: '.repeat(2000)}1${'}'.repeat(2000)}\n`],
  ])('%s nested thousands deep', (_name, text) => {
    const r = parseYaml(text, 'f.yaml');
    expect(r.diagnostics.map((d) => [d.code, d.line, d.detail])).toEqual([['spec.yaml-syntax', 1, TOO_DEEP]]);
    expect(r.diagnostics[0].col).toBeGreaterThan(64);
  });

  it('counts documents, skipping empty ones, and knows an empty file', () => {
    expect(parseYaml('a: 1\n---\nb: 2\n---\n', 'f.yaml').docs.map((d) => [d.index, d.value])).toEqual([
      [0, { a: 1 }],
      [1, { b: 2 }],
    ]);
    for (const text of ['', '# only a comment\n', '---\n']) expect(parseYaml(text, 'f.yaml').empty).toBe(true);
    expect(parseYaml('a: [\n', 'f.yaml').empty).toBe(false);
  });

  it('a list as a key is no process warning on stderr (the loader reports the key)', () => {
    const warned = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const r = parseYaml('spec:\n  ? [a, b]\n  : x\n', 'f.yaml');
      expect(r.diagnostics).toEqual([]);
      expect(r.docs[0].value).toEqual({ spec: { '[ a, b ]': 'x' } });
      expect(warned).not.toHaveBeenCalled();
    } finally {
      warned.mockRestore();
    }
  });

  it('resolves merge keys', () => {
    const r = parseYaml('base: &b { x: 1 }\nc:\n  <<: *b\n  y: 2\n', 'f.yaml');
    expect(r.docs[0].value).toEqual({ base: { x: 1 }, c: { x: 1, y: 2 } });
  });
});

describe('positions', () => {
  const text = `metadata: { name: web }
spec:
  count: 2
  size:
    cpu: 4
  hardware: [general, gpu]
  near:
`;
  const src = parseYaml(text, 'f.yaml').docs[0];
  const cases: [string, (src: SourceDoc, p: Path) => Where, Path, string][] = [
    ['value in a flow map', valueWhere, ['metadata', 'name'], 'f.yaml:1:19'],
    ['key in a flow map', keyWhere, ['metadata', 'name'], 'f.yaml:1:13'],
    ['value in a block map', valueWhere, ['spec', 'count'], 'f.yaml:3:10'],
    ['key in a block map', keyWhere, ['spec', 'count'], 'f.yaml:3:3'],
    ['sequence item', valueWhere, ['spec', 'hardware', 1], 'f.yaml:6:23'],
    ['empty value falls back to its key', valueWhere, ['spec', 'near'], 'f.yaml:7:3'],
    ['missing key falls back to the deepest existing node', valueWhere, ['spec', 'size', 'memoryGiB'], 'f.yaml:4:3'],
    ['owner of a missing key is the key of its map', ownerWhere, ['spec', 'size'], 'f.yaml:4:3'],
    ['owner of the root is the document start', ownerWhere, [], 'f.yaml:1:1'],
  ];
  it.each(cases)('%s', (_name, fn, path, want) => {
    expect(location(fn(src, path))).toBe(want);
  });

  it('collects a pointer per node by dotted path', () => {
    const p = collectPointers(src);
    expect(location(p.get('spec.size.cpu')!)).toBe('f.yaml:5:10');
    expect(location(p.get('spec.hardware.0')!)).toBe('f.yaml:6:14');
    expect(location(p.get('spec.near')!)).toBe('f.yaml:7:3');
  });
});
