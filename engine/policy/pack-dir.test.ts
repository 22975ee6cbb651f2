import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packDirProblem, type PackDirProblem } from './pack-dir.ts';

/** The one check of a pack's folder behind spec.pack-not-found (stack loader) and policy.pack-missing (pack loader). */
describe('packDirProblem', () => {
  const root = mkdtempSync(join(tmpdir(), 'fleet-pack-dir-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'pack'));
  writeFileSync(join(root, 'pack', 'policy.yaml'), 'apiVersion: fleet/v1\n');
  mkdirSync(join(root, 'empty'));
  mkdirSync(join(root, 'odd', 'policy.yaml'), { recursive: true });
  writeFileSync(join(root, 'notes.txt'), 'not a pack');
  symlinkSync(join(root, 'pack'), join(root, 'linked'));
  symlinkSync(join(root, 'gone'), join(root, 'dangling'));
  // A policy.yaml that cannot be stat'ed (a link loop here; a folder without permission alike) was said to be absent.
  mkdirSync(join(root, 'looped'));
  symlinkSync('policy.yaml', join(root, 'looped', 'policy.yaml'));

  const cases: { name: string; path: string; want: PackDirProblem | undefined }[] = [
    { name: 'a folder holding policy.yaml', path: 'pack', want: undefined },
    { name: 'a link to such a folder', path: 'linked', want: undefined },
    { name: 'nothing there', path: 'nope', want: 'missing' },
    { name: 'a broken link', path: 'dangling', want: 'missing' },
    { name: 'a folder without policy.yaml', path: 'empty', want: 'no-pack-file' },
    { name: 'a folder whose policy.yaml is a folder', path: 'odd', want: 'no-pack-file' },
    { name: "the pack's file itself", path: 'pack/policy.yaml', want: 'is-pack-file' },
    { name: 'another file', path: 'notes.txt', want: 'is-file' },
    { name: 'below a file', path: 'notes.txt/pack', want: 'missing' },
    { name: 'a folder whose policy.yaml cannot be read', path: 'looped', want: 'unreadable' },
  ];
  it.each(cases)('$name: $want', ({ path, want }) => {
    expect(packDirProblem(join(root, path))).toBe(want);
  });
});
