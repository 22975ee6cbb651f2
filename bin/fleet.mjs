#!/usr/bin/env node
// The `fleet` command. The sources are TypeScript run through tsx's loader, so a
// clean `npm ci` needs no build step and there is no stale build to trip over.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../engine/cli/main.ts');
process.exitCode = await main(process.argv);
