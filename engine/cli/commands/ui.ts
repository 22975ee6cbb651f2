import type { Command } from 'commander';
import { runCommand } from '../io.ts';
import { loaderEnv, recordUrlOption, stackOption } from '../options.ts';
import type { ServeUiOptions } from './ui-run.ts';
import type { RegisterCommand } from './types.ts';

const load = () => import('./ui-run.ts');

/**
 * `fleet ui`: the read-only dashboard of a stack's record (engine/ui) on its
 * own port, for the embedded default where no authority runs. Runs until
 * SIGINT/SIGTERM. A deployed authority serves the same pages under /ui.
 */
export const registerUi: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('ui')
    .description(
      "Serve the stack's read-only dashboard (fleets, VMs and their history, locks, applies, drift, the lifecycle) until stopped. Sign in with FLEET_ADMIN_TOKEN or FLEET_READ_TOKEN; when neither is set, with the token written to <stack>/.fleet/ui.token.",
    )
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--port <n>', 'port to listen on (0: any free port)', '7402')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (or FLEET_TLS_CERT)')
    .option('--tls-key <file>', 'the private key of --tls-cert (or FLEET_TLS_KEY)')
    .option('--insecure', 'allow plain HTTP on a non-loopback --host (only behind a TLS-terminating proxy)')
    .action(async (opts: ServeUiOptions & { recordUrl?: string }) => {
      const withRecord = { ...io, env: loaderEnv(io, opts) };
      setExit(await runCommand(io, async () => (await load()).serve(io, 'dashboard', async () => (await load()).serveUi(withRecord, opts))));
    });
};
