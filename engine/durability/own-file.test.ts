// Files the tool writes under <stack>/.fleet/ are never written through a symbolic link at their name: a link planted
// there (a shared CI workspace) had its target overwritten (or appended to) and made 0600, and a dangling one created
// its target wherever it pointed. Every link here points into the test's own temp folder.
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadOrCreateSecret } from '../authority/keys.ts';
import { FleetError } from '../diags/index.ts';
import { AgentLedger, agentLedgerFile } from '../../providers/drivers/agent-ledger.ts';
import { IdempotencyStore, idempotencyLogFile } from '../../providers/dmz-client/idempotency.ts';
import { openOwnFile, writeAll, writeOwnFile } from './own-file.ts';
import { makePrivate } from './private.ts';
import { seededRandom } from '../model/seeded-random.ts';

let dir: string;
let victim: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dmzfleet-own-file-'));
  victim = join(dir, 'victim.txt');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The victim as it was planted: `text`, 0644. */
function plantVictim(text: string): void {
  writeFileSync(victim, text);
  chmodSync(victim, 0o644);
}
const untouched = (text: string) => {
  expect(readFileSync(victim, 'utf8')).toBe(text);
  expect(statSync(victim).mode & 0o777).toBe(0o644);
};

describe('writeOwnFile', () => {
  it('refuses a symbolic link to a file, and a dangling one, saying so', () => {
    plantVictim('keep\n');
    const link = join(dir, 'a');
    symlinkSync(victim, link);
    expect(() => writeOwnFile(link, 'x')).toThrow(`${link} is a symbolic link (to ${victim})`);
    expect(() => writeOwnFile(link, 'x', 'append')).toThrow('is a symbolic link');
    untouched('keep\n');
    const dangling = join(dir, 'b');
    symlinkSync(join(dir, 'nowhere'), dangling);
    expect(() => writeOwnFile(dangling, 'x')).toThrow('is a symbolic link');
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
  });

  it('writes a file of its own 0600, an existing one made 0600', () => {
    const f = join(dir, 'f');
    writeOwnFile(f, 'one\n');
    writeOwnFile(f, 'two\n', 'append');
    expect(readFileSync(f, 'utf8')).toBe('one\ntwo\n');
    chmodSync(f, 0o644);
    writeOwnFile(f, 'three\n');
    expect(readFileSync(f, 'utf8')).toBe('three\n');
    expect(statSync(f).mode & 0o777).toBe(0o600);
  });
});

describe('writeAll', () => {
  // Texts of a few KiB to ~340 Ki characters are encoded into one buffer the process keeps (a plan document's
  // pieces); each write must be exactly its own text's UTF-8, whatever an earlier, longer one left in the buffer.
  it.each([
    ['short (Buffer.from)', 'ab€\n'],
    ['a piece, non-ASCII (the kept buffer)', `${'é€😀x'.repeat(20_000)}\n`],
    ['longer than the kept buffer takes', `${'€'.repeat(400_000)}\n`],
  ])('writes %s text whole, after a longer one', (_, text) => {
    const f = join(dir, 'f');
    const fd = openOwnFile(f, 'write');
    try {
      writeAll(fd, 'z'.repeat(300_000));
      writeAll(fd, text);
      writeAll(fd, text);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(f).equals(Buffer.from(`${'z'.repeat(300_000)}${text}${text}`))).toBe(true);
  });
});

describe('files under the state folder', () => {
  it("authority.secret / ui.token: a link to a file is not read, made 0600 or overwritten, a dangling one creates nothing", () => {
    plantVictim('');
    const secret = join(dir, 'authority.secret');
    symlinkSync(victim, secret);
    const err = (() => {
      try {
        loadOrCreateSecret(secret);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).diagnostics[0]).toMatchObject({ code: 'apply.secret-file', file: secret });
    expect((err as FleetError).diagnostics[0].detail).toContain(`is a symbolic link (to ${victim})`);
    untouched('');
    // A link to a file with text: neither taken for the secret nor made 0600.
    const full = join(dir, 'full.txt');
    writeFileSync(full, 'not-a-secret\n');
    chmodSync(full, 0o644);
    const linked = join(dir, 'linked.secret');
    symlinkSync(full, linked);
    expect(() => loadOrCreateSecret(linked)).toThrow(`${linked} is a symbolic link (to ${full})`);
    expect(statSync(full).mode & 0o777).toBe(0o644);
    const token = join(dir, 'ui.token');
    symlinkSync(join(dir, 'elsewhere'), token);
    expect(() => loadOrCreateSecret(token, "the dashboard's sign-in token")).toThrow('is a symbolic link');
    expect(existsSync(join(dir, 'elsewhere'))).toBe(false);
  });

  it("the boot agents' ledger: a link at its (predictable) temp name is not written through", () => {
    plantVictim('keep\n');
    symlinkSync(victim, `${agentLedgerFile(dir, 'dc-a')}.${process.pid}.tmp`);
    const ledger = AgentLedger.open(dir, 'dc-a');
    expect(() => ledger.set('i-1', { state: 'booting', tokenHash: 'a'.repeat(64) })).toThrow('is a symbolic link');
    untouched('keep\n');
    expect(lstatSync(agentLedgerFile(dir, 'dc-a'), { throwIfNoEntry: false })).toBeUndefined();
  });

  it("the DMZ client's request log: a link at requests.jsonl is not appended to", async () => {
    plantVictim('keep\n');
    // The state folder's own files are made 0600 when it opens (makePrivate): the victim lies beside it.
    const state = join(dir, 'state');
    mkdirSync(state);
    symlinkSync(victim, idempotencyLogFile(state));
    const store = new IdempotencyStore<{ n: number }>(state);
    try {
      await expect(store.run('k', 'fp', async () => ({ n: 1 }))).rejects.toThrow('is a symbolic link');
    } finally {
      await store.close().catch(() => undefined);
    }
    untouched('keep\n');
  });
});

// makePrivate tightens what is under the state folder when it opens; it followed a link at the folder's name
// (.fleet/sim/<dc> -> any folder) and made every file under its target 0600 and every folder 0700.
describe('makePrivate', () => {
  it('leaves a symbolic link to a folder, and what it holds, as they are', () => {
    const other = join(dir, 'other');
    mkdirSync(join(other, 'sub'), { recursive: true });
    chmodSync(other, 0o755);
    chmodSync(join(other, 'sub'), 0o755);
    writeFileSync(join(other, 'f'), 'x');
    chmodSync(join(other, 'f'), 0o644);
    const state = join(dir, 'state');
    mkdirSync(state);
    chmodSync(state, 0o755);
    symlinkSync(other, join(state, 'dc-a'));
    symlinkSync(join(other, 'f'), join(state, 'file-link'));
    writeFileSync(join(state, 'own'), 'y');
    chmodSync(join(state, 'own'), 0o644);
    makePrivate(join(state, 'dc-a'));
    makePrivate(state);
    const modes = Object.fromEntries(['other', 'other/sub', 'other/f', 'state', 'state/own'].map((p) => [p, (statSync(join(dir, p)).mode & 0o777).toString(8)]));
    expect(modes).toEqual({ other: '755', 'other/sub': '755', 'other/f': '644', state: '700', 'state/own': '600' });
  });

  // makePrivate looks at each file with one lstat and opens only those group or others may use (a PGlite record's
  // ~1,000 files, nearly all 0600, were each opened at every open of the record): for every mode, a file ends 0600
  // when group or others had any bit, and keeps its mode otherwise, at any depth; folders end 0700 likewise.
  it('makes every file that group or others may use 0600 and leaves the others, whatever their modes (generated trees)', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rnd = seededRandom(seed);
      const root = join(dir, `tree-${seed}`);
      mkdirSync(root);
      const files: [string, number][] = [];
      const folders: [string, number][] = [[root, 0o700 | rnd.int(0o100)]];
      for (let i = rnd.between(1, 25); i > 0; i--) {
        const parent = rnd.pick(folders)[0];
        if (rnd.chance(0.2)) {
          const sub = join(parent, `d${i}`);
          mkdirSync(sub);
          folders.push([sub, 0o700 | rnd.int(0o100)]);
        } else {
          const file = join(parent, `f${i}`);
          writeFileSync(file, 'x');
          // Owner read and write kept (the tool's own files), any bits for group and others, sometimes none.
          files.push([file, 0o600 | (rnd.chance(0.4) ? 0 : rnd.int(0o100))]);
        }
      }
      for (const [path, mode] of [...files, ...folders]) chmodSync(path, mode);
      makePrivate(root);
      const mode = (path: string) => statSync(path).mode & 0o777;
      for (const [file, was] of files) expect([seed, file, mode(file).toString(8)]).toEqual([seed, file, (was & 0o077 ? 0o600 : was).toString(8)]);
      for (const [folder, was] of folders) expect([seed, folder, mode(folder).toString(8)]).toEqual([seed, folder, (was & 0o077 ? 0o700 : was).toString(8)]);
    }
  });
});
