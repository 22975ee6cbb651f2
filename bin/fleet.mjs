#!/usr/bin/env node
// The `fleet` command. It runs the JavaScript that bin/build.mjs made from the
// TypeScript sources at `npm ci` (dist/cli), as long as every source it was
// built from is unchanged (bin/fresh.mjs); otherwise (an edit since, no
// build, or FLEET_FROM_SOURCE=1) it runs the sources through tsx's loader, so
// a stale build is never what runs.
import { freshBuild } from './fresh.mjs';

const built = freshBuild(new URL('../dist/cli/', import.meta.url), new URL('../', import.meta.url));
let main;
if (built) {
  ({ main } = await import(built.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../engine/cli/main.ts'));
}
process.exitCode = await main(process.argv);
