import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

/** Runs a process that counts 2 `a` and 3 `b` when COUNTING, with FLEET_MESSAGE_COUNTS set to `dir` (or unset); its pid. */
function counter(dir: string | undefined): number {
  const mod = pathToFileURL(join(import.meta.dirname, 'message-counts.ts')).href;
  const script = `import { COUNTING, countMessage } from ${JSON.stringify(mod)}; if (COUNTING) { countMessage('a'); countMessage('a'); countMessage('b', 3); } console.log(process.pid);`;
  const env = { ...process.env };
  delete env.FLEET_MESSAGE_COUNTS;
  if (dir !== undefined) env.FLEET_MESSAGE_COUNTS = dir;
  return Number(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env, encoding: 'utf8' }).trim());
}

describe('message counts (bench:apply --messages)', () => {
  it('off unless FLEET_MESSAGE_COUNTS names a directory; on, a process writes its counts by kind there at exit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-message-counts-'));
    try {
      counter(undefined);
      counter('');
      expect(await readdir(dir)).toEqual([]);
      const pid = counter(dir);
      expect(await readdir(dir)).toEqual([`${pid}.json`]);
      expect(JSON.parse(await readFile(join(dir, `${pid}.json`), 'utf8'))).toEqual({ a: 2, b: 3 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
