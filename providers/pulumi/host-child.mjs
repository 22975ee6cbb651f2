// A stand-in for Pulumi's dynamic-provider host (@pulumi/pulumi
// cmd/dynamic-provider/index.js), for tests: a fresh Node process, no tsx, no
// project module loaded, which turns a serialized provider's text back into
// an object exactly as the host does (`requireFromString(text).handler()`,
// with the require-from-string that @pulumi/pulumi itself depends on) and
// then calls its methods.
//
// Usage: node host-child.mjs FILE   (FILE holds serializeFunction's text)
// stdin:  one JSON call a line: { "n": 1, "method": "create", "args": [...] }
// stdout: one JSON answer a line: { "n": 1, "ok": true, "value": ... } or
//         { "n": 1, "ok": false, "error": { isError, name, message, stack, diagnostics, id, properties, reasons } }
//         (what the host reads of a rejection: e.message, and e.id/properties/reasons for a partial result).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const pulumiMain = createRequire(import.meta.url).resolve('@pulumi/pulumi');
const requireFromString = createRequire(pulumiMain)('require-from-string');
const provider = requireFromString(readFileSync(process.argv[2], 'utf8')).handler();

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const { n, method, args } = JSON.parse(line);
  let answer;
  try {
    answer = { n, ok: true, value: (await provider[method](...args)) ?? null };
  } catch (e) {
    answer = {
      n,
      ok: false,
      error: {
        isError: e instanceof Error,
        name: e?.name,
        message: e?.message ?? null,
        stack: typeof e?.stack === 'string' ? e.stack : null,
        diagnostics: e?.diagnostics ?? null,
        id: e?.id ?? null,
        properties: e?.properties ?? null,
        reasons: e?.reasons ?? null,
      },
    };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
});
