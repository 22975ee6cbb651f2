import type { Command } from 'commander';
import { runCommand } from '../io.ts';
import { DEFAULT_STACK } from '../main.ts';
import type { ServeDmzClientOptions, ServeOrchestratorOptions } from './serve-run.ts';
import type { RegisterCommand } from './types.ts';

const load = () => import('./serve-run.ts');

/**
 * `fleet serve orchestrator` (the authority) and `fleet serve dmz-client`:
 * the long-running services of a deployment. Both run until SIGINT/SIGTERM.
 */
export const registerServe: RegisterCommand = (program: Command, io, setExit) => {
  const serveCmd = program.command('serve').description('Run a long-running service: the authority (orchestrator) or a data center\'s DMZ client.');
  serveCmd
    .command('orchestrator')
    .description('Run the authority for a stack. Tokens of the data centers\' DMZ clients come from FLEET_DMZ_TOKEN_<DC>; the disk-key secret from FLEET_AUTHORITY_SECRET or <stack>/.fleet/authority.secret.')
    .option('--stack <dir>', 'stack folder (holding stack.yaml)', DEFAULT_STACK)
    .option('--port <n>', 'port to listen on (0: any free port)', '7400')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (opts: ServeOrchestratorOptions) => {
      setExit(await runCommand(io, async () => (await load()).serve(io, 'authority', async () => (await load()).serveOrchestrator(io, opts))));
    });
  serveCmd
    .command('dmz-client')
    .description('Run the DMZ client of one data center. Its token at the authority comes from FLEET_DMZ_TOKEN_<DC>; the token callers must present from the data center\'s auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>).')
    .requiredOption('--data-center <name>', 'data center of the stack this client serves')
    .option('--driver <driver>', 'cloud driver: sim, aws or azure (must match the data center\'s driver in stack.yaml)', 'sim')
    .option('--config <file>', 'DMZ client config (a DmzClient document: the driver\'s region, network, endpoint); required by aws and azure')
    .requiredOption('--authority <url>', 'base URL of the authority')
    .option('--stack <dir>', 'stack folder (holding stack.yaml)', DEFAULT_STACK)
    .option('--port <n>', 'port to listen on (0: any free port)', '7401')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--state-dir <dir>', 'state folder (default <stack>/.fleet/sim/<dc>)')
    .action(async (opts: ServeDmzClientOptions) => {
      setExit(await runCommand(io, async () => (await load()).serve(io, `dmz-client ${opts.dataCenter}`, async () => (await load()).serveDmzClient(io, opts))));
    });
};
