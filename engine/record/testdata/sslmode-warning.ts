// Run by postgres.test.ts in a process of its own (node-postgres warns about
// an aliased sslmode once per process, so a test process that parsed such a
// URL before would prove nothing): prints, as JSON, the warnings the process
// emitted while `how` used the URL given.
//
//   node --import tsx sslmode-warning.ts <open|pg> <url> [reworded]
//
// open: the record opens it (openPostgres); pg: node-postgres is given it as
// it is (new pg.Client). Then a warning of another kind is emitted, which
// must still go out. `reworded`: pg-connection-string is loaded with its
// warning's words changed, as an upgrade might change them.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type pgTypes from 'pg';

const [how, url, reworded] = process.argv.slice(2);
const require = createRequire(import.meta.url);
if (reworded === 'reworded') {
  // The module pg requires, from the installed source with other words, put where require finds it first.
  const pgRequire = createRequire(require.resolve('pg'));
  const file = pgRequire.resolve('pg-connection-string');
  const source = readFileSync(file, 'utf8');
  const changed = source.replace('SECURITY WARNING: The SSL modes', 'Security notice: the SSL modes');
  if (changed === source) throw new Error('bug in test: the warning is not in pg-connection-string');
  const Module = require('node:module') as { new (id: string): { filename: string; paths: string[]; loaded: boolean; exports: unknown; _compile(code: string, file: string): void }; _nodeModulePaths(dir: string): string[] };
  const m = new Module(file);
  m.filename = file;
  m.paths = Module._nodeModulePaths(file);
  m._compile(changed, file);
  m.loaded = true;
  require.cache[file] = m as unknown as NodeJS.Module;
}

const seen: string[] = [];
process.on('warning', (w) => seen.push(w.message));
if (how === 'open') {
  const { openPostgres } = await import('../postgres.ts');
  await openPostgres(url, 'a test record').then(
    (r) => r.close(),
    () => undefined,
  );
} else {
  const pg = require('pg') as typeof pgTypes;
  new pg.Client({ connectionString: url });
}
process.emitWarning('another warning of the test');
// Warnings are emitted on the next tick.
await new Promise((resolve) => setImmediate(resolve));
process.stdout.write(JSON.stringify(seen));
