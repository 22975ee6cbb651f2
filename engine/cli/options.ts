// Options several commands share, each with the environment variable CI
// systems set instead of repeating a flag in every step. A flag on the
// command line wins over its variable; the variable wins over the default.
import { Option, type Command } from 'commander';
import type { RecordRetryOptions } from '../apply/record-retry.ts';
import type { CliIO } from './io.ts';
import { escapeUnseen } from '../diags/index.ts';

/** engine/spec/loader.ts RECORD_URL_FLAG_ENV (spelled here so that options load without the loader; options.test.ts keeps them equal). */
export const RECORD_URL_FLAG_ENV = 'FLEET_RECORD_URL_FROM_FLAG';

export const DEFAULT_STACK = 'stacks/local';

/** Option name (commander's attribute name) -> environment variable, for every command that has the option. */
export const OPTION_ENV = {
  stack: 'FLEET_STACK',
  recordUrl: 'FLEET_RECORD_URL',
  parallelism: 'FLEET_PARALLELISM',
  lockTimeout: 'FLEET_LOCK_TIMEOUT',
} as const;

export const stackOption = () => new Option('--stack <dir>', 'stack folder (holding stack.yaml)').default(DEFAULT_STACK).env(OPTION_ENV.stack);

/** Passed to the loader as FLEET_RECORD_URL, which overrides the stack's `record`. */
export const recordUrlOption = () =>
  new Option('--record-url <url>', "record to use instead of the stack's `record` (pglite://DIR or postgres://…)").env(OPTION_ENV.recordUrl);

export const formatOption = (choices: readonly string[] = ['text', 'json']) =>
  new Option('--format <format>', choices.includes('json') ? 'output format (json: one document on stdout, diagnostics inside)' : 'output format')
    .choices([...choices])
    .default('text');

/**
 * The most VM operations at once per data center: the stack schema's
 * `apply.parallelism` maximum, and the most a DMZ client takes as a lane's
 * width (protocol/schemas/dmz-client.ts, runLaneSchema). Keep the three equal.
 */
export const MAX_PARALLELISM = 1000;

export const parallelismOption = () =>
  new Option('--parallelism <n>', 'VM operations at once per data center, 1 to 1000 (default: stack apply.parallelism, else 10)').env(OPTION_ENV.parallelism);

export const lockTimeoutOption = () =>
  new Option('--lock-timeout <seconds>', 'wait this long for fleet locks held by another apply, and for an embedded data center or a PGlite record another process has open (default: stack apply.lockTimeoutSeconds, else 0; a PGlite record is waited for at least FLEET_RECORD_BUSY_TIMEOUT_MS, 10 s)').env(
    OPTION_ENV.lockTimeout,
  );

/**
 * The environment a command hands to the loader: --record-url (or
 * FLEET_RECORD_URL) applied. A URL that came from the flag is marked
 * (RECORD_URL_FLAG_ENV), so the loader's diagnostics name --record-url, not
 * the variable the user never set.
 */
export function loaderEnv(io: CliIO, opts: { recordUrl?: string }): NodeJS.ProcessEnv {
  if (opts.recordUrl === undefined) return io.env;
  const fromFlag = io.env[OPTION_ENV.recordUrl] !== opts.recordUrl;
  return { ...io.env, FLEET_RECORD_URL: opts.recordUrl, ...(fromFlag ? { [RECORD_URL_FLAG_ENV]: '1' } : {}) };
}

/**
 * Reads options' environment variables from `io.env` rather than
 * `process.env` (commander reads the latter), so an in-process run with its
 * own environment (the tests, an embedding program) gets the same answer as
 * a real process. Runs before each action: a value given on the command line
 * stays; one from the environment replaces a default.
 */
export function applyEnv(cmd: Command, io: CliIO): void {
  for (const opt of cmd.options) {
    if (!opt.envVar) continue;
    const key = opt.attributeName();
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli') continue;
    const value = io.env[opt.envVar];
    if (value !== undefined && value !== '') cmd.setOptionValueWithSource(key, value, 'env');
    else if (source === 'env') cmd.setOptionValueWithSource(key, opt.defaultValue, 'default');
  }
}

/**
 * An option given an empty value on the command line (`--record-url ""`, `--stack=`, `--target ""`): usually a
 * shell variable that was not set. It used to be taken as not given (`--record-url ""`: the stack's `record` was
 * used, silently) or as a name ("no fleet named  ", "cannot write : it is a folder"). Refused, as a usage error
 * naming the option; an empty environment variable still means unset (applyEnv). Checks `cmd` and the commands
 * above it.
 */
export function rejectEmptyValues(cmd: Command): void {
  for (let at: Command | null = cmd; at; at = at.parent) {
    for (const opt of at.options) {
      const key = opt.attributeName();
      if (at.getOptionValueSource(key) !== 'cli') continue;
      const value: unknown = at.getOptionValue(key);
      if (value === '' || (Array.isArray(value) && value.includes(''))) {
        cmd.error(`option '${opt.flags}' argument is empty: give it a value (an unset shell variable?), or leave the option out`, { code: 'fleet.emptyOptionValue' });
      }
    }
  }
}

/**
 * What a command says of its record's outage (a PostgreSQL failover), while
 * its record calls are retried (engine/apply/record-retry.ts): once when it
 * begins, once when it ends (`what` goes on: "the apply", "the refresh").
 */
export function recordOutageNotices(io: CliIO, what: string, say: (text: string) => void = (text) => io.stderr.write(text)): Pick<RecordRetryOptions, 'onOutage' | 'onBack'> {
  return {
    onOutage: (fault, budgetMs) =>
      say(`warning: the record is unreachable; retrying for up to ${Math.round(budgetMs / 1000)} s (FLEET_RETRY_BUDGET_MS): ${escapeUnseen(fault.diagnostics[0].detail)}\n`),
    onBack: (ms) => say(`note: the record is reachable again after ${(ms / 1000).toFixed(1)} s; ${what} goes on.\n`),
  };
}
