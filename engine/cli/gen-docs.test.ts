import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CLI_DOC_PATH, renderCliDoc } from './gen-docs.ts';
import { buildProgram } from './main.ts';
import { PassThrough, Readable } from 'node:stream';
import type { Command } from 'commander';

describe('docs/cli.md', () => {
  it('is what `npm run gen:docs` generates from the command definitions', async () => {
    const doc = await readFile(CLI_DOC_PATH, 'utf8');
    expect(doc === renderCliDoc(), 'docs/cli.md is stale: run `npm run gen:docs` and commit docs/cli.md').toBe(true);
  });

  it('documents every command and every option of each', () => {
    const doc = renderCliDoc();
    const program = buildProgram({ stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]), env: {}, cwd: '/' }, () => {});
    const walk = (c: Command, path: string[]): void => {
      for (const sub of c.commands) {
        const p = [...path, sub.name()];
        if (sub.commands.length) walk(sub, p);
        else expect(doc).toContain(`### fleet ${p.join(' ')}\n`);
        for (const o of sub.options) expect(doc).toContain(`| \`${o.flags}\` |`);
      }
    };
    walk(program, []);
    for (const env of ['FLEET_STACK', 'FLEET_RECORD_URL', 'FLEET_PARALLELISM', 'FLEET_LOCK_TIMEOUT']) expect(doc).toContain(`env \`${env}\``);
  });
});
