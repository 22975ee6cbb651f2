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
    // Keys are equal as the yaml package had them equal when it checked (uniqueKeys: true): same scalar value.
    ['duplicate number key', '1: a\n1.0: b\n', ['f.yaml:2:1 Key "1" is given twice in the same mapping (first at line 1, column 1); keep one.']],
    ['duplicate explicit key', '? a\n: 1\n? a\n: 2\n', ['f.yaml:3:3 Key "a" is given twice in the same mapping (first at line 1, column 3); keep one.']],
    ['duplicate key in a list item and in a key', '- a: 1\n  a: 2\n- ? {b: 1, b: 2}\n  : x\n', ['f.yaml:2:3 Key "a" is given twice in the same mapping (first at line 1, column 3); keep one.', 'f.yaml:3:12 Key "b" is given twice in the same mapping (first at line 3, column 6); keep one.']],
    ['duplicate keys among other errors, in order', 'a: 1\na: 2\nb: [x\nc: 1\nc: 2\n', ['f.yaml:2:1 Key "a" is given twice in the same mapping (first at line 1, column 1); keep one.', 'f.yaml:4:1 Flow sequence in block collection must be sufficiently indented and end with a ] (the [ opened at line 3, column 4).', 'f.yaml:5:1 Key "c" is given twice in the same mapping (first at line 4, column 1); keep one.']],
    // An empty key has no character of its own: it was told past the end of its `? ` line, or, the second of two
    // `: x` lines, at column 1 before its indentation, and "Key "null"" (a key named null). Now at its entry's `?`,
    // else its `:`, and called empty.
    ...(
      [
        ['"" twice', 'm:\n  "": a\n  "": b\n', '3:3', '2, column 3'],
        ['? with nothing after it, twice', 'm:\n  ? \n  : a\n  ? \n  : b\n', '4:3', '2, column 3'],
        ['nothing before the colon, twice', 'm:\n  : a\n  : b\n', '3:3', '2, column 3'],
        ['~ twice', 'm:\n  ~: a\n  ~: b\n', '3:3', '2, column 3'],
        ['? twice in a flow map', 'm: {? : a, ? : b}\n', '1:12', '1, column 5'],
        ['nothing before the colon twice in a flow map', 'm: {: a, : b}\n', '1:10', '1, column 5'],
      ] as const
    ).map(([name, text, at, first]): [string, string, string[]] => [`an empty key: ${name}`, text, [`f.yaml:${at} An empty key ("", ~, null, or none before the colon) is given twice in the same mapping (first at line ${first}); keep one.`]]),
    // Keys the yaml package holds different and the plain data names alike: one value was dropped without a word.
    ['an empty key as "" and as ?', 'm:\n  "": a\n  ? \n  : b\n', ['f.yaml:3:3 An empty key ("", ~, null, or none before the colon) is given twice in the same mapping (first at line 2, column 3, written another way: both name the same key); keep one.']],
    ['a number key and the same as a string', 'm: {1: a, "1": b}\n', ['f.yaml:1:11 Key "1" is given twice in the same mapping (first at line 1, column 5, written another way: both name the same key); keep one.']],
    ['a boolean key and the same as a string', 'true: a\n"true": b\n', ['f.yaml:2:1 Key "true" is given twice in the same mapping (first at line 1, column 1, written another way: both name the same key); keep one.']],
    ['.nan and merge keys twice are not duplicates', '.nan: a\n.nan: b\n<<: {x: 1}\n<<: {y: 1}\n', []],
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

  // The yaml package's own duplicate check (uniqueKeys: true) compared each key with every earlier key of its
  // mapping: 20,000 labels took some 6-13 s to parse, before any check ran. Keys given twice are found in one pass.
  const KEYS = 20_000;
  const labels = (key: (i: number) => string): string => `labels:\n${Array.from({ length: KEYS }, (_, i) => `  ${key(i)}: v\n`).join('')}`;
  it('reads a mapping of 20,000 keys', () => {
    const r = parseYaml(labels((i) => `k${i}`), 'f.yaml');
    expect(r.diagnostics).toEqual([]);
    expect(Object.keys((r.docs[0].value as { labels: object }).labels)).toHaveLength(KEYS);
  });
  it('finds a key given twice at key 19,999 of 20,000, at its place', () => {
    const r = parseYaml(labels((i) => (i === KEYS - 2 ? 'k6' : `k${i}`)), 'f.yaml');
    expect(r.docs).toEqual([]);
    expect(r.diagnostics.map((d) => `${d.code} ${location(d)} ${d.detail}`)).toEqual([`spec.yaml-syntax f.yaml:${KEYS}:3 Key "k6" is given twice in the same mapping (first at line 8, column 3); keep one.`]);
  });
  // Each key given twice was worded by a walk of the whole document: 5,000 of them took 4 s, 10,000 some 17 s.
  it('words 10,000 keys given twice, each at its place', () => {
    const n = KEYS / 2;
    const r = parseYaml(labels((i) => `k${i % n}`), 'f.yaml');
    expect(r.diagnostics).toHaveLength(n);
    expect([r.diagnostics[0], r.diagnostics[n - 1]].map((d) => `${location(d)} ${d.detail}`)).toEqual([
      `f.yaml:${n + 2}:3 Key "k0" is given twice in the same mapping (first at line 2, column 3); keep one.`,
      `f.yaml:${KEYS + 1}:3 Key "k${n - 1}" is given twice in the same mapping (first at line ${n + 1}, column 3); keep one.`,
    ]);
  });
  it('finds a key given twice in a flow mapping of 20,000 keys', () => {
    const text = `labels: {${Array.from({ length: KEYS }, (_, i) => `k${i === KEYS - 1 ? 0 : i}: v`).join(', ')}}\n`;
    const r = parseYaml(text, 'f.yaml');
    expect(r.diagnostics.map((d) => `${location(d)} ${d.detail}`)).toEqual([`f.yaml:1:${text.lastIndexOf('k0:') + 1} Key "k0" is given twice in the same mapping (first at line 1, column 10); keep one.`]);
  });

  // The yaml package only warns about an unknown tag or directive and reads on: `image: !custom rhel-9` and a
  // `%YAML 9.9` file validated, the tag dropped. Refused at the tag (or directive); YAML's core tags are kept.
  const BOMB = `x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n${Array.from({ length: 6 }, (_, i) => `x${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`).join('\n')}\n`;
  it.each([
    ['a local tag', 'a: 1\nimage: !custom rhel-9\n', ['spec.yaml-syntax 2:8 Tag "!custom" is not a tag dmzfleet reads']],
    ['an unknown !! tag', 'image: !!weird rhel-9\n', ['spec.yaml-syntax 1:8 Tag "!!weird" is not a tag dmzfleet reads']],
    ["YAML 1.1's !!binary", 'image: !!binary aGVsbG8=\n', ['spec.yaml-syntax 1:8 Tag "!!binary" is not a tag dmzfleet reads']],
    ["YAML 1.1's !!timestamp", 'at: !!timestamp 2020-01-01\n', ['spec.yaml-syntax 1:5 Tag "!!timestamp" is not a tag dmzfleet reads']],
    ['a tag on the document', '--- !weird\na: 1\n', ['spec.yaml-syntax 1:5 Tag "!weird" is not a tag dmzfleet reads']],
    ['a %TAG handle', '%TAG !e! tag:example.com,2000:\n---\na: !e!foo x\n', ['spec.yaml-syntax 3:4 Tag "tag:example.com,2000:foo" is not a tag dmzfleet reads']],
    ['a core tag that does not fit', 'a: !!float 1\n', ['spec.yaml-syntax 1:4 Tag "!!float" does not fit the value it is given']],
    ['%YAML 9.9', '%YAML 9.9\n---\na: 1\n', ['spec.yaml-syntax 1:7 Unsupported YAML version 9.9: dmzfleet reads YAML 1.2']],
    ['%YAML 1.1', '%YAML 1.1\n---\na: no\n', ['spec.yaml-syntax 1:1 %YAML 1.1 would read this document by YAML 1.1']],
    ['an unknown directive', '%FOO bar\n---\na: 1\n', ['spec.yaml-syntax 1:1 Unknown directive %FOO: dmzfleet reads YAML 1.2']],
    // It said "Excessive alias count indicates a resource exhaustion attack." at 1:1.
    ['an alias bomb', BOMB, ['spec.yaml-syntax 3:10 *a1 here is an alias of a list or mapping that holds aliases itself: each copy copies the aliases inside it, and the document would expand to more than 1000 aliased values (a "billion laughs")']],
  ])('refuses %s, at its place', (_name, text, want) => {
    const r = parseYaml(text, 'f.yaml');
    expect(r.docs).toEqual([]);
    expect(r.diagnostics.map((d) => `${d.code} ${d.line}:${d.col} ${d.detail}`.slice(0, want[0].length))).toEqual(want);
  });

  it.each([
    ['!!str', 'a: !!str 5\n', { a: '5' }],
    ['!!int, !!bool, !!null', 'a: !!int 5\nb: !!bool true\nc: !!null ~\n', { a: 5, b: true, c: null }],
    ['!!seq and !!map', 'a: !!seq [1]\nb: !!map { c: 1 }\n', { a: [1], b: { c: 1 } }],
    ['the non-specific tag', 'a: ! 5\n', { a: '5' }],
    ['a verbatim core tag', 'a: !<tag:yaml.org,2002:str> 5\n', { a: '5' }],
    ['%YAML 1.2', '%YAML 1.2\n---\na: no\n', { a: 'no' }],
    ['a few aliases', 'a: &x [1, 2]\nb: *x\nc: *x\n', { a: [1, 2], b: [1, 2], c: [1, 2] }],
  ])("reads YAML's core tag %s", (_name, text, want) => {
    const r = parseYaml(text, 'f.yaml');
    expect(r.diagnostics).toEqual([]);
    expect(r.docs[0].value).toEqual(want);
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

  // The plain data names an empty key "" (toJS): looked for as "null", it was not found, and a refusal of it (a label's
  // empty key, an unknown key) was told at its mapping's key (`labels:`), lines above it.
  it.each([
    ['? with nothing after it', 'labels:\n  a: b\n  ? \n  : c\n', 'f.yaml:3:3'],
    ['nothing before the colon', 'labels:\n  a: b\n  : c\n', 'f.yaml:3:3'],
    ['~', 'labels:\n  a: b\n  ~: c\n', 'f.yaml:3:3'],
    ['""', 'labels:\n  a: b\n  "": c\n', 'f.yaml:3:3'],
    ['? in a flow map', 'labels: {a: b, ? : c}\n', 'f.yaml:1:16'],
  ])('an empty key (%s) is found, at its entry', (_name, text, want) => {
    expect(location(keyWhere(parseYaml(text, 'f.yaml').docs[0], ['labels', '']))).toBe(want);
  });

  it('collects a pointer per node by dotted path', () => {
    const p = collectPointers(src);
    expect(location(p.get('spec.size.cpu')!)).toBe('f.yaml:5:10');
    expect(location(p.get('spec.hardware.0')!)).toBe('f.yaml:6:14');
    expect(location(p.get('spec.near')!)).toBe('f.yaml:7:3');
  });
});
