import { defineCodes } from './types.ts';

export const cliCodes = defineCodes({
  'cli.usage': {
    summary: 'Invalid command line',
    doc: 'An option or argument is missing or malformed, or an option was given an empty value (`--record-url ""`, often an unset shell variable: leave the option out instead). Run the command with --help.',
    severity: 'error',
  },
  'cli.internal': {
    summary: 'Internal error',
    doc: 'A bug in dmzfleet. The detail carries the message; please report it with the command that ran.',
    severity: 'error',
  },
});
