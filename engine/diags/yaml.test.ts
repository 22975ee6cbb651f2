import { parseAllDocuments, parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { UNCHECKED_KEYS, checkDuplicateKeys } from './yaml.ts';

/** The errors (code and offset) of every document of `text`, as the yaml package's own duplicate-key check gives them, and as checkDuplicateKeys does. */
function both(text: string): { theirs: string[][]; ours: string[][] } {
  const shown = (docs: { errors: { code: string; pos: [number, number] }[] }[]) => docs.map((d) => d.errors.map((e) => `${e.code}@${e.pos[0]}`));
  const theirs = parseAllDocuments(text, { uniqueKeys: true, merge: true, logLevel: 'error', resolveKnownTags: false });
  const ours = parseAllDocuments(text, { ...UNCHECKED_KEYS, merge: true, logLevel: 'error', resolveKnownTags: false });
  for (const d of ours) checkDuplicateKeys(d);
  return { theirs: shown(theirs), ours: shown(ours) };
}

describe('checkDuplicateKeys', () => {
  it.each([
    ['no duplicate', 'a: 1\nb: { c: 1, d: 2 }\n'],
    ['block map', 'a: 1\nb: 2\na: 3\n'],
    ['flow map', 'x: { a: 1, b: 2, a: 3, a: 4 }\n'],
    ['nested, and the same key in different maps', 'a: { k: 1 }\nb: { k: 2, k: 3 }\nc:\n  - k: 1\n    k: 2\n'],
    ['the same number twice', 'x: { 1: a, 1.0: c }\n'],
    ['empty keys', '{ : a, : b }\n'],
    ['.nan is never a duplicate, null is', 'x: { .nan: a, .nan: b, null: c, ~: d }\n'],
    ['merge keys', 'base: &b { a: 1 }\nx:\n  <<: *b\n  <<: *b\n'],
    ['with other errors before and after', 'a: [1\nb: 2\nb: 3\nc: ]\n'],
    ['several documents', 'a: 1\na: 2\n---\nb: 1\n---\nc: 1\nc: 2\nc: 3\n'],
    ['a key with an anchor', '&k a: 1\na: 2\n'],
  ])('%s: the same errors as the yaml package', (_name, text) => {
    const { theirs, ours } = both(text);
    expect(ours).toEqual(theirs);
  });

  // Where it differs from the yaml package: keys whose scalars differ but which the plain data (toJS) names alike.
  // The yaml package let them through, and one value silently took the other's place.
  it.each([
    ['a number and the same as a string', 'x: { 1: a, "1": b }\n', 'x: { 1: a, '.length],
    ['an empty key as "" and as ~', '"": a\n~: b\n', 'a\n"": a\n'.length - 2],
    ['an empty key as "" and as ?', '"": a\n? \n: b\n', '"": a\n'.length],
    ['true and "true"', 'true: a\n"true": b\n', 'true: a\n'.length],
  ])('%s: a key given twice, at the second', (_name, text, at) => {
    const doc = parseDocument(text, UNCHECKED_KEYS);
    checkDuplicateKeys(doc, text);
    expect(doc.errors.map((e) => [e.code, e.pos[0]])).toEqual([['DUPLICATE_KEY', at]]);
  });

  it('a mapping of 5,000 keys: the one key given twice, at its second place', () => {
    const keys = Array.from({ length: 5_000 }, (_, i) => `team-${i}: { vms: 1 }`);
    keys.push('team-7: { vms: 2 }');
    const text = `limits: { ${keys.join(', ')} }\n`;
    const doc = parseDocument(text, UNCHECKED_KEYS);
    checkDuplicateKeys(doc);
    expect(doc.errors.map((e) => [e.code, e.pos[0]])).toEqual([['DUPLICATE_KEY', text.lastIndexOf('team-7:')]]);
  });
});
