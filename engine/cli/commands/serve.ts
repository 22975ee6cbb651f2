import type { Command } from 'commander';
import { runCommand } from '../io.ts';
import { loaderEnv, recordUrlOption, stackOption } from '../options.ts';
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
    .description('Run the authority for a stack. Tokens of the data centers\' DMZ clients come from FLEET_DMZ_TOKEN_<DC>; the disk-key secret from FLEET_AUTHORITY_SECRET or <stack>/.fleet/authority.secret. With FLEET_ADMIN_TOKEN or FLEET_READ_TOKEN set, it also serves the read-only dashboard under /ui; FLEET_ADMIN_TOKEN is also the admin token overrides (--allow-destroy) are proven with. With FLEET_AUTHORITY_TOKEN (or the stack\'s authority.tokenEnv) set, required when stack.yaml has an authority address, it seals and registers the stack\'s plans and approves only requests of registered plans.')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--port <n>', 'port to listen on (0: any free port)', '7400')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (or FLEET_TLS_CERT)')
    .option('--tls-key <file>', 'the private key of --tls-cert (or FLEET_TLS_KEY)')
    .option('--client-ca <file>', 'require client certificates signed by this CA bundle: mutual TLS (or FLEET_TLS_CLIENT_CA)')
    .option('--insecure', 'allow plain HTTP on a non-loopback --host (only behind a TLS-terminating proxy)')
    .option('--replicas <n>', 'how many authorities serve this stack\'s record; more than 1 turns off the row cache and approvals ahead (or FLEET_AUTHORITY_REPLICAS; default 1)')
    .option('--log-level <level>', 'log level of the JSON-line logs on stdout: fatal, error, warn, info, debug, trace or silent (or FLEET_LOG_LEVEL; default info)')
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long work in flight may take to finish before connections are cut (or FLEET_DRAIN_TIMEOUT; default 20)')
    .action(async (opts: ServeOrchestratorOptions & { recordUrl?: string }) => {
      const withRecord = { ...io, env: loaderEnv(io, opts) };
      setExit(await runCommand(io, async () => (await load()).serve(io, 'authority', async () => (await load()).serveOrchestrator(withRecord, opts))));
    });
  serveCmd
    .command('dmz-client')
    .description('Run the DMZ client of one data center. Its token at the authority comes from FLEET_DMZ_TOKEN_<DC>; the token callers must present from the data center\'s auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>).')
    .requiredOption('--data-center <name>', 'data center of the stack this client serves')
    .option('--driver <driver>', 'cloud driver: sim, aws or azure (must match the data center\'s driver in stack.yaml)', 'sim')
    .option('--config <file>', 'DMZ client config (a DmzClient document: the driver\'s region, network, endpoint); required by aws and azure')
    .requiredOption('--authority <url>', 'base URL of the authority (https://; http:// only on loopback)')
    .addOption(stackOption())
    .option('--port <n>', 'port to listen on (0: any free port)', '7401')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--state-dir <dir>', 'state folder (default <stack>/.fleet/sim/<dc>)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (or FLEET_TLS_CERT)')
    .option('--tls-key <file>', 'the private key of --tls-cert (or FLEET_TLS_KEY)')
    .option('--client-ca <file>', 'require client certificates signed by this CA bundle: mutual TLS (or FLEET_TLS_CLIENT_CA)')
    .option('--insecure', 'allow plain HTTP on a non-loopback --host (only behind a TLS-terminating proxy)')
    .option('--authority-ca <file>', 'CA bundle to verify an https authority with (default: the system\'s)')
    .option('--authority-cert <file>', 'this DMZ client\'s certificate for an authority that requires client certificates')
    .option('--authority-key <file>', 'the private key of --authority-cert')
    .option('--boot-ca <file>', 'CA bundle the data center\'s VMs verify this DMZ client\'s certificate with at the boot endpoint (or FLEET_BOOT_CA; the sim\'s agents use it, aws and azure VMs get it in their user data; default: the system\'s)')
    .option('--log-level <level>', 'log level of the JSON-line logs on stdout: fatal, error, warn, info, debug, trace or silent (or FLEET_LOG_LEVEL; default info)')
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long work in flight may take to finish before connections are cut (or FLEET_DRAIN_TIMEOUT; default 20)')
    .action(async (opts: ServeDmzClientOptions) => {
      setExit(await runCommand(io, async () => (await load()).serve(io, `dmz-client ${opts.dataCenter}`, async () => (await load()).serveDmzClient(io, opts))));
    });
};
