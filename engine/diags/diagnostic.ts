import { CODES, type Code } from './codes/index.ts';
import { DETAIL_LIMIT, WHERE_LIMIT, boundText, clipRuns } from './quote.ts';
import { escapeUnseen } from './unseen.ts';

export type Severity = 'error' | 'warning';

/** Where a diagnostic applies: a place in a file, a VM or fleet address, or both. */
export interface Where {
  file?: string;
  /** 1-based line. */
  line?: number;
  /** 1-based column. */
  col?: number;
  /** A VM address (`web/3`), a fleet name, or a lock id. */
  address?: string;
}

/**
 * A problem a person can act on: what (summary, fixed per code), why (detail,
 * specific to this occurrence) and where. Collected, never thrown for bad
 * input; only bugs throw.
 */
export interface Diagnostic extends Where {
  severity: Severity;
  code: Code;
  summary: string;
  detail: string;
}

/**
 * A diagnostic of a registered code. Its detail and location are bounded
 * (clipRuns, boundText): a message should quote values with quote() or
 * clip(), and one that quoted a value whole (a 2 MB `image:`) still prints
 * a few hundred characters of it, not the value, and the rest of its words.
 */
export function diag(code: Code, detail: string, where: Where = {}, severity?: Severity): Diagnostic {
  const entry = CODES[code];
  if (!entry) throw new Error(`bug: diagnostic code ${String(code)} is not in the registry`);
  const d: Diagnostic = { severity: severity ?? entry.severity, code, summary: entry.summary, detail: boundText(clipRuns(detail), DETAIL_LIMIT) };
  if (where.file !== undefined) d.file = boundText(where.file, WHERE_LIMIT);
  if (where.line !== undefined) d.line = where.line;
  if (where.col !== undefined) d.col = where.col;
  if (where.address !== undefined) d.address = boundText(where.address, WHERE_LIMIT);
  return d;
}

export function hasErrors(diags: readonly Diagnostic[]): boolean {
  return diags.some((d) => d.severity === 'error');
}

/** Stable order: by file, line, column, then code. */
export function sortDiagnostics(diags: Diagnostic[]): Diagnostic[] {
  return diags.sort(
    (a, b) =>
      (a.file ?? '').localeCompare(b.file ?? '') ||
      (a.line ?? 0) - (b.line ?? 0) ||
      (a.col ?? 0) - (b.col ?? 0) ||
      (a.address ?? '').localeCompare(b.address ?? '') ||
      a.code.localeCompare(b.code),
  );
}

export function location(d: Where): string {
  const parts: string[] = [];
  if (d.file !== undefined) {
    let s = d.file;
    if (d.line !== undefined) s += `:${d.line}`;
    if (d.line !== undefined && d.col !== undefined) s += `:${d.col}`;
    parts.push(s);
  }
  if (d.address !== undefined) parts.push(d.address);
  return parts.join(' ');
}

/**
 * Text form for stderr: `error[spec.unknown-key]: Unknown key` then `  at
 * file:1:2` then the detail. A detail or location quotes what people and
 * data centers wrote (a flag's value, a VM name, a rule's message): their
 * characters that do not show are written as escapes (`\u001B`,
 * escapeUnseen), so none acts on the terminal. A detail keeps its line
 * breaks and tabs, each further line indented as the first, so no line of
 * it can pass for a diagnostic of its own.
 */
export function formatDiagnostic(d: Diagnostic): string {
  const loc = escapeUnseen(location(d));
  const detail = d.detail.replace(/[^\n\t]+/g, escapeUnseen).replace(/\n/g, '\n  ');
  return `${d.severity}[${d.code}]: ${escapeUnseen(d.summary)}\n${loc ? `  at ${loc}\n` : ''}  ${detail}\n`;
}

export function formatDiagnostics(diags: readonly Diagnostic[]): string {
  return diags.map(formatDiagnostic).join('\n');
}

/**
 * The text of diagnostics: `summary: detail (at where)`, joined by `; `. An
 * Error's message, for hosts that show only that (Pulumi's dynamic-provider
 * host, which prints it as it is): the location's unseen characters are
 * escaped, as formatDiagnostic escapes them (a VM address a data center
 * answered with a line break forged a line of Pulumi's output); a detail
 * quotes what others wrote through quote() and clip(), which escape theirs.
 */
export function diagnosticsMessage(diags: readonly Diagnostic[]): string {
  return diags
    .map((d) => {
      const loc = escapeUnseen(location(d));
      return `${d.summary}: ${d.detail}${loc ? ` (at ${loc})` : ''}`;
    })
    .join('; ');
}

/**
 * Thrown when an operation cannot go on because of bad input or an outside
 * fault (unreachable database, lock held, stale plan). The CLI prints its
 * diagnostics and exits 1; it never shows a stack trace for these.
 *
 * It must stay an Error with a message after Pulumi's closure serializer
 * (pulumi.runtime.serializeFunction) has rewritten it, because the providers
 * throw it and Pulumi's dynamic-provider host reports only `e.message`. The
 * serializer turns this class into a plain function whose `super(...)` is
 * `Error.call(this, message)` (which builds and drops a new Error, setting
 * nothing on `this`) and whose prototype object does not reach
 * Error.prototype. So when `this` has no own message, the constructor links
 * its prototype to Error.prototype and sets the message and stack itself: the
 * copy's errors are Errors with the same name, message and diagnostics, and
 * `instanceof FleetError` keeps telling them from bugs inside the copy.
 * providers/pulumi/serialized.test.ts proves it in a fresh Node process.
 */
export class FleetError extends Error {
  readonly diagnostics: Diagnostic[];
  constructor(diagnostics: Diagnostic | Diagnostic[]) {
    const list = Array.isArray(diagnostics) ? diagnostics : [diagnostics];
    const message = diagnosticsMessage(list);
    super(message);
    // Error's constructor defines an own `message`; in the serialized copy nothing did.
    if (!Object.hasOwn(this, 'message')) {
      if (!((this as object) instanceof Error)) Object.setPrototypeOf(Object.getPrototypeOf(this), Error.prototype);
      Object.defineProperty(this, 'message', { value: message, writable: true, configurable: true, enumerable: false });
      Error.captureStackTrace(this, FleetError);
    }
    this.name = 'FleetError';
    this.diagnostics = list;
  }
}

export function fail(code: Code, detail: string, where: Where = {}): never {
  throw new FleetError(diag(code, detail, where));
}

/** Node's file-system error codes a person meets, in words (the code kept in parentheses). */
const FS_REASONS: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a folder, not a file',
  ENOTDIR: 'a part of its path is not a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EMFILE: 'too many open files',
};

/**
 * What a path that is neither a regular file nor a folder is, in words ("a
 * named pipe (FIFO)"), or undefined. Input files (stack.yaml, a policy test
 * case) are stat'ed and refused when they are one: reading a named pipe
 * waits for a writer for ever, and a device such as /dev/zero never ends (it
 * took all the memory there was). A folder is left to the read's EISDIR.
 */
export function specialFileKind(s: { isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string | undefined {
  if (s.isFile() || s.isDirectory()) return undefined;
  if (s.isFIFO()) return 'a named pipe (FIFO)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  return 'a special file';
}

/** Why a file could not be read or written, for a diagnostic: "it is a folder, not a file (EISDIR)". */
export function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') return FS_REASONS[code] ? `${FS_REASONS[code]} (${code})` : code;
  return err instanceof Error ? err.message : String(err);
}
