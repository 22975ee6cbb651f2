import { describe, expect, it } from 'vitest';
import { RecordUnreachableError } from '../record/errors.ts';
import type { CliIO } from './io.ts';
import { recordOutageNotices } from './options.ts';

describe('recordOutageNotices', () => {
  it.each(['the apply', 'the refresh'])('says once when the outage of %s begins and once when it ends', (what) => {
    const lines: string[] = [];
    const io = { stderr: { write: (s: string) => lines.push(s) } } as unknown as CliIO;
    const n = recordOutageNotices(io, what);
    n.onOutage?.(new RecordUnreachableError('PostgreSQL at postgres://x@127.0.0.1:5432/r is unreachable: Connection terminated unexpectedly.', true), 60_000);
    n.onBack?.(1234);
    expect(lines).toEqual([
      'warning: the record is unreachable; retrying for up to 60 s (FLEET_RETRY_BUDGET_MS): PostgreSQL at postgres://x@127.0.0.1:5432/r is unreachable: Connection terminated unexpectedly.\n',
      `note: the record is reachable again after 1.2 s; ${what} goes on.\n`,
    ]);
  });

  // The cause is the server's or the driver's message: shown as text, on one line.
  it('shows the cause\'s control characters and line breaks as escapes', () => {
    const lines: string[] = [];
    const io = { stderr: { write: (s: string) => lines.push(s) } } as unknown as CliIO;
    recordOutageNotices(io, 'the apply').onOutage?.(new RecordUnreachableError('PostgreSQL is unreachable: \x1b[2Jgone\r\nApply complete: 10 VMs changed', true), 60_000);
    expect(lines).toEqual(['warning: the record is unreachable; retrying for up to 60 s (FLEET_RETRY_BUDGET_MS): PostgreSQL is unreachable: \\u001B[2Jgone\\u000D\\u000AApply complete: 10 VMs changed\n']);
  });

  // Mid-apply on a terminal they go above the progress bars (Progress.note), which a redraw would write over.
  it('writes through `say` when given', () => {
    const said: string[] = [];
    const io = { stderr: { write: () => expect.unreachable('stderr') } } as unknown as CliIO;
    const n = recordOutageNotices(io, 'the apply', (t) => said.push(t));
    n.onOutage?.(new RecordUnreachableError('gone', true), 1000);
    n.onBack?.(10);
    expect(said).toHaveLength(2);
  });
});
