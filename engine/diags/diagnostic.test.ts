import { describe, expect, it } from 'vitest';
import { FleetError, diag, fail, formatDiagnostic, fsReason, hasErrors, location, sortDiagnostics, type Where } from './index.ts';

describe('diag', () => {
  it('takes summary and severity from the registry and copies only the given location fields', () => {
    const d = diag('spec.unknown-key', 'Key "x" is not allowed in spec.', { file: 'a.yaml', line: 3, col: 5 });
    expect(d).toEqual({ severity: 'error', code: 'spec.unknown-key', summary: 'Unknown key', detail: 'Key "x" is not allowed in spec.', file: 'a.yaml', line: 3, col: 5 });
    expect(Object.keys(diag('cli.usage', 'x'))).not.toContain('file');
  });

  it('lets a caller lower the severity', () => {
    expect(diag('spec.unknown-key', 'x', {}, 'warning').severity).toBe('warning');
  });

  it('throws a plain error (a bug) for an unregistered code', () => {
    expect(() => diag('no.such-code' as never, 'x')).toThrow(/not in the registry/);
  });
});

describe('location', () => {
  const cases: [string, Where, string][] = [
    ['nothing', {}, ''],
    ['file only', { file: 'a.yaml' }, 'a.yaml'],
    ['file and line', { file: 'a.yaml', line: 2 }, 'a.yaml:2'],
    ['file, line and column', { file: 'a.yaml', line: 2, col: 7 }, 'a.yaml:2:7'],
    ['column without line is dropped', { file: 'a.yaml', col: 7 }, 'a.yaml'],
    ['address only', { address: 'web/3' }, 'web/3'],
    ['file and address', { file: 'a.yaml', line: 1, col: 1, address: 'web/0' }, 'a.yaml:1:1 web/0'],
  ];
  it.each(cases)('%s', (_name, where, want) => {
    expect(location(where)).toBe(want);
  });
});

describe('formatDiagnostic', () => {
  // Found by QA: a detail quoting what a person or a data center wrote (a --data-center value, a VM name, a custom
  // rule's message) reached the terminal raw: an escape sequence in it acted on the operator's terminal.
  it.each([
    ['an escape sequence', 'name \u001b[2J\u001b[31mred', 'name \\u001B[2J\\u001B[31mred'],
    ['a carriage return', 'ok\rforged', 'ok\\u000Dforged'],
    ['a right-to-left override', 'pr\u202eod', 'pr\\u202Eod'],
    ['a bell and a NUL', 'a\u0007b\u0000c', 'a\\u0007b\\u0000c'],
    ['line breaks and tabs, which stay (each further line indented as the first)', 'one\n  two\tthree', 'one\n    two\tthree'],
  ])('shows %s in a detail escaped', (_name, raw, shown) => {
    expect(formatDiagnostic(diag('cli.usage', `detail ${raw}`))).toBe(`error[cli.usage]: Invalid command line\n  detail ${shown}\n`);
  });

  it('shows every unseen character of a location escaped, line breaks too', () => {
    const text = formatDiagnostic(diag('cli.usage', 'd', { file: 'f\u001b[2J.yaml', address: 'dc\nx\u202e' }));
    expect(text).toBe('error[cli.usage]: Invalid command line\n  at f\\u001B[2J.yaml dc\\u000Ax\\u202E\n  d\n');
  });

  it('prints severity, code, summary, location and detail', () => {
    const d = diag('spec.missing-field', 'spec has no "image", which is required.', { file: 'web.yaml', line: 5, col: 1 });
    expect(formatDiagnostic(d)).toBe('error[spec.missing-field]: Missing required field\n  at web.yaml:5:1\n  spec has no "image", which is required.\n');
  });

  it('leaves out the location line when there is none', () => {
    expect(formatDiagnostic(diag('cli.usage', 'Bad flag.'))).toBe('error[cli.usage]: Invalid command line\n  Bad flag.\n');
  });

  // A detail quotes what others wrote (a value of a spec, a file name, the
  // message a custom rule threw with) and goes to a terminal or a CI log: an
  // ESC there cleared the screen, a newline forged a diagnostic of its own.
  it.each([
    { name: 'ESC in the detail', d: diag('cli.usage', 'rule said \u001b[2J\u001b[H done'), want: 'error[cli.usage]: Invalid command line\n  rule said \\u001B[2J\\u001B[H done\n' },
    // Kept as a line break, the line after it indented as the detail is: it cannot pass for a diagnostic of its own.
    { name: 'a newline in the detail', d: diag('cli.usage', 'x\nerror[forged]: Nothing'), want: 'error[cli.usage]: Invalid command line\n  x\n  error[forged]: Nothing\n' },
    { name: 'a right-to-left override in a file name', d: diag('cli.usage', 'Bad.', { file: 'a\u202Elmay.yaml', line: 1 }), want: 'error[cli.usage]: Invalid command line\n  at a\\u202Elmay.yaml:1\n  Bad.\n' },
    { name: 'a bell in an address', d: diag('cli.usage', 'Bad.', { address: 'web/0\u0007' }), want: 'error[cli.usage]: Invalid command line\n  at web/0\\u0007\n  Bad.\n' },
  ])('shows control and format characters escaped: $name', ({ d, want }) => {
    expect(formatDiagnostic(d)).toBe(want);
  });
});

describe('sortDiagnostics and hasErrors', () => {
  it('orders by file, line, column, address, then code', () => {
    const list = [
      diag('spec.wrong-type', 'x', { file: 'b.yaml', line: 1, col: 1 }),
      diag('spec.unknown-key', 'x', { file: 'a.yaml', line: 2, col: 1 }),
      diag('spec.out-of-range', 'x', { file: 'a.yaml', line: 2, col: 1 }),
      diag('spec.wrong-type', 'x', { file: 'a.yaml', line: 1, col: 9 }),
    ];
    expect(sortDiagnostics(list).map((d) => `${location(d)} ${d.code}`)).toEqual([
      'a.yaml:1:9 spec.wrong-type',
      'a.yaml:2:1 spec.out-of-range',
      'a.yaml:2:1 spec.unknown-key',
      'b.yaml:1:1 spec.wrong-type',
    ]);
  });

  it('counts only errors', () => {
    expect(hasErrors([diag('spec.unknown-key', 'x', {}, 'warning')])).toBe(false);
    expect(hasErrors([diag('spec.unknown-key', 'x')])).toBe(true);
    expect(hasErrors([])).toBe(false);
  });
});

describe('FleetError', () => {
  it('carries its diagnostics and a readable message', () => {
    const e = new FleetError(diag('spec.stack-not-found', 'nowhere/stack.yaml does not exist.'));
    expect(e).toBeInstanceOf(Error);
    expect(e.diagnostics).toHaveLength(1);
    expect(e.message).toBe('Stack file not found: nowhere/stack.yaml does not exist.');
  });

  it('says where in its message, for hosts that show only the message (Pulumi)', () => {
    const e = new FleetError([diag('apply.step-vetoed', 'create web/3 in miami: no.', { address: 'web/3' }), diag('spec.read-error', 'x.', { file: 'a.yaml', line: 2, col: 3 })]);
    expect(e.message).toBe('Request vetoed by the authority: create web/3 in miami: no. (at web/3); Cannot read file: x. (at a.yaml:2:3)');
  });

  it('is what fail() throws', () => {
    expect(() => fail('spec.read-error', 'x')).toThrow(FleetError);
  });
});

describe('fsReason', () => {
  it.each([
    [Object.assign(new Error('x'), { code: 'EISDIR' }), 'it is a folder, not a file (EISDIR)'],
    [Object.assign(new Error('x'), { code: 'ENOENT' }), 'no such file (ENOENT)'],
    [Object.assign(new Error('x'), { code: 'EWEIRD' }), 'EWEIRD'],
    [new Error('plain'), 'plain'],
    ['text', 'text'],
  ])('%s -> %s', (err, want) => {
    expect(fsReason(err)).toBe(want);
  });
});
