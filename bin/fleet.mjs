#!/usr/bin/env node
// The `fleet` command. It runs the JavaScript that bin/build.mjs made from the
// TypeScript sources at `npm ci` (dist/cli), as long as every source it was
// built from is unchanged (bin/fresh.mjs); otherwise (an edit since, no
// build, or FLEET_FROM_SOURCE=1) it runs the sources through tsx's loader, so
// a stale build is never what runs.
import { setTimeout } from 'node:timers';
import { loadMain } from './fresh.mjs';

const { main } = await loadMain(new URL('../', import.meta.url));
process.exitCode = await main(process.argv);
// The command is done (a service returns only once stopped). Something it
// loaded may still hold the process: a policy pack's rule module that keeps
// a timer or a connection open (a cache it refreshes) made `fleet validate`
// print "valid" and never exit. Left alone, the process ends as soon as
// nothing is pending; past a grace period (unref'd, so it never delays that),
// it ends with the command's exit code.
setTimeout(() => process.exit(), 2_000).unref();
