import { describe, expect, it } from 'vitest';
import { parseYaml } from './yamlpos.ts';

// The yaml package's own duplicate check (uniqueKeys: true) compared each key with every earlier key of its
// mapping: a pack or test case with 20,000 keys in one mapping took seconds to parse. Found in one pass.
describe('parseYaml (policy)', () => {
  const KEYS = 20_000;
  const text = (key: (i: number) => string): string => `config:\n${Array.from({ length: KEYS }, (_, i) => `  ${key(i)}: v\n`).join('')}`;
  it('reads a mapping of 20,000 keys', () => {
    const y = parseYaml(text((i) => `k${i}`), 'policy.yaml');
    expect(y.errors).toEqual([]);
    expect(Object.keys((y.value as { config: object }).config)).toHaveLength(KEYS);
  });
  it('finds a key given twice at key 19,999 of 20,000, at its place', () => {
    const y = parseYaml(text((i) => (i === KEYS - 2 ? 'k6' : `k${i}`)), 'policy.yaml');
    expect(y.value).toBeUndefined();
    expect(y.errors).toEqual([{ message: 'Key "k6" is given twice in the same mapping (first at line 8, column 3); keep one.', where: { file: 'policy.yaml', line: KEYS, col: 3 } }]);
  });
});
