// `fleet apply`'s Ctrl-C / SIGTERM handling (onInterrupt), signal by signal,
// and its "yes" prompt. The whole command under signals is
// test/apply.e2e.test.ts ("interrupted with Ctrl-C"); a signal at the prompt
// needs a terminal, so that part is here.
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CliIO } from '../io.ts';
import { FleetError, diag, formatDiagnostics, type Code } from '../../diags/index.ts';
import { FAILURES_SHOWN, INTERRUPTED_EXIT, applySummary, confirm, lockLostBeforeApply, memberFailures, onInterrupt, stoppedMidApply, textFailures } from './apply.ts';
import { failureHint, requestFailureCause, stepFailureCause } from '../../apply/index.ts';
import { SIM_READY_TIMEOUT_MS } from '../../../providers/drivers/sim/options.ts';

function io(): { io: CliIO; err: () => string } {
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (c: Buffer) => (text += c.toString()));
  return { io: { stdout: new PassThrough(), stderr, stdin: new PassThrough(), env: {}, cwd: '/' }, err: () => text };
}

/** Runs `fn` with a fresh handler (disposed after), process.exit stubbed (`exited` lists its codes), and stderr so far. */
function withHandler(fn: (h: ReturnType<typeof onInterrupt>, err: () => string, exited: unknown[]) => void): void {
  const exited: unknown[] = [];
  vi.spyOn(process, 'exit').mockImplementation(((code?: number) => void exited.push(code)) as never);
  const { io: cli, err } = io();
  const h = onInterrupt(cli);
  try {
    fn(h, err, exited);
  } finally {
    h.dispose();
  }
}

describe('fleet apply: Ctrl-C and SIGTERM', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('during the apply: the first %s stops further members, the second exits 130', (sig) =>
    withHandler((h, err, exited) => {
      h.applying();
      process.emit(sig, sig);
      expect(h.signal.aborted).toBe(true);
      expect(err()).toContain(`${sig}: no further VM will be started, nor one whose requests have not gone out yet; the ones in flight (their requests sent) finish and are journalled.`);
      expect(exited).toEqual([]);
      process.emit(sig, sig);
      expect(exited).toEqual([INTERRUPTED_EXIT]);
      // It said only "the steps in flight stay started": nothing of the locks it leaves.
      expect(err()).toContain(`${sig} again: stopping now; the steps in flight stay \`started\` in the journal, and this apply's fleet locks stay held until the next \`fleet apply\` on this host breaks them or their lease runs out (30 s)`);
    }),
  );

  // Planning and the "yes" prompt run under the locks taken before planning:
  // Node's default handling of a Ctrl-C there left them for their lease to
  // expire (or for the next apply on this host to break).
  it.each(['SIGINT', 'SIGTERM'] as const)('before the apply (planning, the prompt): the first %s cancels (nothing applied), the second exits 130', (sig) =>
    withHandler((h, err, exited) => {
      process.emit(sig, sig);
      expect(h.signal.aborted).toBe(true);
      expect(err()).toContain(`${sig}: nothing was applied; stopping and releasing the locks.`);
      expect(exited).toEqual([]);
      process.emit(sig, sig);
      expect(exited).toEqual([INTERRUPTED_EXIT]);
    }),
  );

  // Once the summary is out the locks are released and the record closed;
  // Node's default handling of a Ctrl-C there killed the CLI after "Apply
  // complete" (exit by signal, locks left behind).
  it.each(['SIGINT', 'SIGTERM'] as const)('after the apply (settled): the first %s only says so, the second exits', (sig) =>
    withHandler((h, err, exited) => {
      h.applying();
      h.settle();
      process.emit(sig, sig);
      expect(exited).toEqual([]);
      expect(h.signal.aborted).toBe(false);
      expect(err()).toContain(`${sig}: the apply is done; releasing its locks and closing the record.`);
      expect(err()).not.toContain('no further VM');
      process.emit(sig, sig);
      expect(exited).toEqual([INTERRUPTED_EXIT]);
    }),
  );

  it('dispose() removes its handlers', () => {
    const before = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    const h = onInterrupt(io().io);
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual([before[0] + 1, before[1] + 1]);
    h.dispose();
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(before);
  });

  it('the "yes" prompt: a typed yes confirms; a Ctrl-C while it waits answers no at once, and a line typed after it is no answer', async () => {
    const a = io();
    const yes = confirm(a.io);
    (a.io.stdin as PassThrough).write('yes\n');
    expect(await yes).toBe(true);
    expect(a.err()).toContain('Do you want to apply these changes?');

    const b = io();
    const stop = new AbortController();
    const waiting = confirm(b.io, stop.signal);
    stop.abort();
    expect(await waiting).toBe(false);

    const c = io();
    const late = new AbortController();
    late.abort();
    const none = confirm(c.io, late.signal);
    (c.io.stdin as PassThrough).write('yes\n');
    expect(await none).toBe(false);
  });
});

describe('fleet apply: the record lost mid-apply', () => {
  const fault = (code: string) => new FleetError(diag(code as Code, 'cannot use the PostgreSQL record at db:5432: connection lost.'));
  it.each([
    { code: 'record.unreachable', hint: true },
    { code: 'record.unwritable', hint: true },
    { code: 'record.version-conflict', hint: false },
    { code: 'apply.stale-plan', hint: false },
  ])('$code: says how the apply goes on: $hint', ({ code, hint }) => {
    const out = stoppedMidApply(fault(code)) as FleetError;
    expect(out.diagnostics[0].code).toBe(code);
    expect(out.diagnostics[0].detail.startsWith('cannot use the PostgreSQL record at db:5432: connection lost.')).toBe(true);
    expect(out.diagnostics[0].detail.includes('Run `fleet apply` again once the record is back: it continues from what the record holds')).toBe(hint);
  });
  it('passes anything else through untouched', () => {
    const bug = new TypeError('x');
    expect(stoppedMidApply(bug)).toBe(bug);
  });
});

// A failed member's cause quotes what a cloud, a DMZ client or an authority
// said. Printed, it must not act on the terminal (escape sequences, a
// carriage return over the line, a bidi override) nor forge a line: a
// newline in a cloud's message printed a line of the cloud's choosing.
describe('fleet apply: a failed member\'s cause from outside', () => {
  const failure = (why: string) => ({
    address: 'web/0',
    dataCenter: 'miami',
    action: 'create' as const,
    step: '(new) -> BeingCreated',
    diagnostic: diag('apply.step-failed', `(new) -> BeingCreated in miami: ${why}`, { address: 'web/0' }),
    cause: 'cloud' as const,
  });
  it.each([
    { name: 'a newline forging a diagnostic', why: 'quota exceeded\nerror[apply.member-failed]: Member failed\n  at web/9', shown: 'quota exceeded\\u000Aerror[apply.member-failed]' },
    { name: 'a newline and a tab', why: 'InvalidParameter\n\tat line 2', shown: 'InvalidParameter\\u000A\\u0009at line 2' },
    { name: 'a carriage return over the line', why: 'denied\r  apply: miami 10/10 steps', shown: 'denied\\u000D  apply' },
    { name: 'an ANSI escape', why: '\x1b[2J\x1b[31mboom', shown: '\\u001B[2J\\u001B[31mboom' },
    { name: 'a right-to-left override', why: 'vetoed \u202Eepyt\u202C', shown: 'vetoed \\u202Eepyt\\u202C' },
  ])('$name: one line in text, as it came in JSON', ({ why, shown }) => {
    const [text] = memberFailures([failure(why)], true);
    const printed = formatDiagnostics([text]);
    // error[...] line, `at web/0`, the detail's cause on one line, then what to do: nothing more.
    const lines = printed.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe(`  ${failureHint('cloud', { address: 'web/0', code: 'apply.step-failed' })}`);
    expect(printed.replace(/\n/g, '')).not.toMatch(/[\p{Cc}\p{Cf}]/u);
    expect(printed).toContain(shown);
    // What and where, then why.
    expect(text.detail.startsWith('create stopped at (new) -> BeingCreated in miami: ')).toBe(true);
    expect(text.address).toBe('web/0');
    const [json] = memberFailures([failure(why)], false);
    expect(json.detail.endsWith(`${why}\n${failureHint('cloud', { address: 'web/0', code: 'apply.step-failed' })}`)).toBe(true);
    expect(json.address).toBe('web/0');
  });
});

// docs/diagnostics.md promises each diagnostic says what to do; a failed
// member's did not, and the way out differs by cause: a veto comes back on
// every re-run, a cloud's failure leaves a state the next plan recovers.
describe('fleet apply: what a failed member\'s diagnostic says to do, by cause', () => {
  const denied = { code: 'driver.boot-denied', message: 'VM sim-7 did not become ready: boot denied: the boot token was used already' };
  it.each([
    { cause: 'vetoed', step: { outcome: 'vetoed' as const }, says: ['vetoed again', 'change the spec, or the policy pack'] },
    { cause: 'boot-denied', step: { outcome: 'failed' as const, error: denied }, says: ['denied its boot', 'BootFailed', '`fleet history web/0`', '`fleet apply` again', 'docs/recovery.md'] },
    {
      cause: 'boot-denied',
      step: { outcome: 'failed' as const, error: { code: 'driver.boot-denied', message: 'awaitReady failed in virginia: instance i-0b powered itself off during its boot without reporting ready (a denied boot); it was terminated' } },
      says: ['denied its boot'],
    },
    // The kind decides, never the words: a denied boot worded any way, and a cloud's message that quotes "boot denied".
    { cause: 'boot-denied', step: { outcome: 'failed' as const, error: { code: 'driver.boot-denied', message: 'awaitReady failed in westeurope: VM vm-1 did not become ready: its boot agent reported a failure; the VM was deleted' } }, says: ['denied its boot'] },
    { cause: 'cloud', step: { outcome: 'failed' as const, error: { code: 'driver.boot-failed', message: 'VM sim-7 did not become ready: cryptsetup: boot denied by TPM policy' } }, says: ['Run `fleet apply` again'] },
    { cause: 'cloud', step: { outcome: 'failed' as const, error: { code: 'driver.failed', message: 'instance i-0b powered itself off (a denied boot)' } }, says: ['Run `fleet apply` again'] },
    { cause: 'timeout', step: { outcome: 'failed' as const, error: { code: 'driver.timeout', message: 'VM sim-7 did not report ready within 60000 ms' } }, says: ['spec.readyTimeoutMs', `${SIM_READY_TIMEOUT_MS / 1000} s in an embedded data center`, '`fleet apply` again', 'docs/recovery.md'] },
    { cause: 'capacity', step: { outcome: 'failed' as const, error: { code: 'driver.capacity', message: 'no room' } }, says: ['out of capacity', '`fleet apply` again'] },
    { cause: 'credentials', step: { outcome: 'failed' as const, error: { code: 'driver.credentials', message: 'expired' } }, says: ['credentials', 'docs/drivers/', '`fleet apply` again'] },
    { cause: 'cloud', step: { outcome: 'failed' as const, error: { code: 'driver.failed', message: 'boot is configured to fail (failCalls)' } }, says: ['Run `fleet apply` again', 'CreateFailed, BootFailed', 'docs/recovery.md'] },
    { cause: 'cloud', step: { outcome: 'failed' as const, error: { code: 'driver.boot-failed', message: 'the released key does not unlock the encrypted disk' } }, says: ['Run `fleet apply` again'] },
    { cause: 'cloud', step: { outcome: 'failed' as const }, says: ['Run `fleet apply` again'] },
    { cause: 'unreachable', request: 'apply.dmz-unreachable' as const, says: ['DMZ client answers again', 'idempotency keys'] },
    { cause: 'unreachable', request: 'apply.dmz-error' as const, says: ['DMZ client answers again'] },
    { cause: 'credentials-expiring', request: 'apply.credentials-expiring' as const, says: ["renew the authority's cloud credentials", "clock right", '`fleet apply` again'] },
    { cause: 'refused', request: 'apply.dmz-rejected' as const, says: ['`apply.dmz-rejected` in docs/diagnostics.md'] },
    { cause: 'refused', request: 'apply.dmz-unauthorized' as const, says: ['`apply.dmz-unauthorized` in docs/diagnostics.md'] },
  ])('$cause ($step.error.code$request)', ({ cause, step, request, says }) => {
    const got = step ? (step.outcome === 'vetoed' ? 'vetoed' : stepFailureCause(step.error)) : requestFailureCause({ code: request as Code });
    expect(got).toBe(cause);
    const code = step ? (step.outcome === 'vetoed' ? 'apply.step-vetoed' : 'apply.step-failed') : (request as Code);
    const [d] = memberFailures([{ address: 'web/0', dataCenter: 'miami', action: 'create', step: 'PoweredOn -> Starting', diagnostic: diag(code, 'PoweredOn -> Starting in miami: why'), cause: got }], true);
    const [first, hint, ...more] = d.detail.split('\n');
    expect(first).toBe(`create stopped at PoweredOn -> Starting in miami: ${diag(code, '').summary}: why`);
    expect(more).toEqual([]);
    for (const s of says) expect(hint).toContain(s);
  });
  it('unhealthy (apply.member-unhealthy): every step answered ok, the VM moved on since', () => {
    const detail = 'the health check in miami: every step of web/0 was answered ok, but the record holds its VM vm-1 in BootFailed, not Running as planned.';
    const [d] = memberFailures([{ address: 'web/0', dataCenter: 'miami', action: 'replace', step: 'the health check', diagnostic: diag('apply.member-unhealthy', detail, { address: 'web/0' }), cause: 'unhealthy' }], true);
    const [first, hint, ...more] = d.detail.split('\n');
    expect(first).toBe('replace stopped at the health check in miami: Member not in its planned state after its steps: every step of web/0 was answered ok, but the record holds its VM vm-1 in BootFailed, not Running as planned.');
    expect(more).toEqual([]);
    for (const s of ['`fleet history web/0`', '`fleet apply` again']) expect(hint).toContain(s);
  });
  it('every cause has its own advice', () => {
    const causes = ['vetoed', 'boot-denied', 'timeout', 'capacity', 'credentials', 'cloud', 'unreachable', 'credentials-expiring', 'refused', 'unhealthy'] as const;
    const hints = causes.map((c) => failureHint(c, { address: 'web/0', code: 'apply.step-failed' }));
    expect(new Set(hints).size).toBe(causes.length);
  });
});

// Every member of a 10,000-VM apply failing (a cloud down) printed 10,000
// four-line diagnostics, mostly the same, and buried the summary.
describe('fleet apply: many failed members in text', () => {
  const failed = (n: number) => Array.from({ length: n }, (_, i) => diag('apply.member-failed', 'create stopped at create BeingCreated in miami: Cloud operation failed: down', { address: `web/${i}` }));
  it.each([
    { n: 0, shown: 0, more: undefined },
    { n: FAILURES_SHOWN, shown: FAILURES_SHOWN, more: undefined },
    { n: FAILURES_SHOWN + 1, shown: FAILURES_SHOWN, more: 'note: 1 more member failed, not shown one by one: ' },
    { n: 10_000, shown: FAILURES_SHOWN, more: `note: ${10_000 - FAILURES_SHOWN} more members failed, not shown one by one: ` },
  ])('$n failed: $shown shown', ({ n, shown, more }) => {
    const r = textFailures(failed(n));
    expect(r.shown).toHaveLength(shown);
    if (more === undefined) expect(r.note).toBeUndefined();
    else {
      expect(r.note?.startsWith(more)).toBe(true);
      expect(r.note?.split('\n')).toHaveLength(2);
    }
    if (n > FAILURES_SHOWN) expect(r.shown.at(-1)?.address).toBe(`web/${FAILURES_SHOWN - 1}`);
    // None twice.
    const all = [...r.shown.map((d) => d.address), ...[...(r.note ?? '').matchAll(/web\/\d+/g)].map((m) => m[0])];
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('fleet apply: the summary line', () => {
  const base = { succeeded: 3, failed: [], notStarted: 0, interrupted: false, elapsedMs: 1234, steps: 18, stepsFailed: 0, stepsSkipped: 0 };
  const failure = { address: 'web/0', dataCenter: 'miami', action: 'create' as const, step: 'PoweredOn -> Starting', diagnostic: diag('apply.member-failed', 'boom'), cause: 'cloud' as const };
  it.each([
    { name: 'complete', r: base, line: 'Apply complete: 3 VMs changed, 0 failed; 18 steps done; in 1.2s.' },
    { name: 'with failures', r: { ...base, failed: [failure], stepsFailed: 1 }, line: 'Apply finished with failures: 3 VMs changed, 1 failed; 18 steps done, 1 failed; in 1.2s.' },
    { name: 'interrupted, members left out', r: { ...base, notStarted: 2, interrupted: true }, line: 'Apply interrupted: 3 VMs changed, 0 failed, 2 not started; 18 steps done; in 1.2s.' },
    // The Ctrl-C landed once every member had started: nothing left out, still interrupted (it said "Apply complete").
    { name: 'interrupted after every member started', r: { ...base, interrupted: true }, line: 'Apply interrupted: 3 VMs changed, 0 failed; 18 steps done; in 1.2s.' },
  ])('$name', ({ r, line }) => {
    expect(applySummary(r)).toBe(line);
  });
});

// A lock lost before the apply started (test/lock-lost-prompt.cli.test.ts runs it through the CLI): the bare heartbeat
// diagnostic said neither when, nor that nothing was changed, nor what to do.
describe('lockLostBeforeApply', () => {
  const lost = new FleetError(diag('record.lock-lost', 'lock L no longer holds fleet web of stack s: its lease expired and another apply took it, or it was unlocked.', { address: 'web' }));
  it.each([
    { name: 'lost while it planned (--yes)', asked: false, says: 'while it planned, before it started' },
    { name: 'lost while it planned or waited at its prompt', asked: true, says: 'while it planned or waited at its confirmation prompt, before it started' },
  ])('$name', ({ asked, says }) => {
    const out = lockLostBeforeApply(lost, asked) as FleetError;
    expect(out.diagnostics).toHaveLength(1);
    expect(out.diagnostics[0]).toMatchObject({ code: 'record.lock-lost', address: 'web' });
    for (const part of ['no longer holds fleet web', says, 'nothing was changed', '`fleet state list`', 'run `fleet apply` again']) expect(out.diagnostics[0].detail).toContain(part);
  });
  it('passes any other error on as it is (the record failing under the heartbeat)', () => {
    const other = new FleetError(diag('record.unreachable', 'the record did not answer'));
    expect(lockLostBeforeApply(other, false)).toBe(other);
  });
});
