import { fail } from '../diags/index.ts';

/**
 * A timeout in milliseconds from the environment variable `name`: unset or
 * empty gives `fallback`; anything but a whole number is refused (cli.usage),
 * before the record is opened. `10s` used to be ignored without a word, or
 * read as NaN. `hint` (e.g. the default) goes in the refusal's parentheses.
 */
export function envMs<F extends number | undefined>(name: string, fallback: F, opts: { env?: NodeJS.ProcessEnv; hint?: string } = {}): number | F {
  const v = (opts.env ?? process.env)[name];
  if (v === undefined || v === '') return fallback;
  if (!/^[0-9]+$/.test(v)) fail('cli.usage', `${name} takes a whole number of milliseconds (0 or more${opts.hint ? `; ${opts.hint}` : ''}), not ${JSON.stringify(v)}.`);
  return Number(v);
}
