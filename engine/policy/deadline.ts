// A deadline for a custom rule's checks. Checks are synchronous, so a check
// that never returns (`while (true) {}`) cannot be stopped by a timer: it
// hung `fleet plan`, `fleet apply`, `fleet policy test` and the authority
// (whose every request then waited on it) forever. node:vm's `timeout`
// terminates whatever JavaScript runs during one runInContext call,
// functions of the main context included (Node 20, 22 and 24), and leaves
// the process usable afterwards; each bounded call starts a watchdog thread
// (0.05-0.3 ms), so a whole evaluation of one rule is one call, never one
// per change.
import type { Session } from 'node:inspector';
import type { Context, Script } from 'node:vm';
import type { Where } from '../diags/index.ts';

/**
 * Node's own modules, taken when they are used rather than imported: the
 * Pulumi Fleet resource's provider reaches evaluateRules (the planner's
 * default policy), and Pulumi serializes every function a provider reaches;
 * node:vm's createContext, node:url's fileURLToPath and node:path's
 * functions lead to native functions it cannot write out
 * (providers/pulumi/serialized.test.ts). Use it for every Node module here
 * and in evaluate.ts.
 */
export const builtin: NodeJS.Process['getBuiltinModule'] = (id: string) => process.getBuiltinModule(id);

/** How long one custom rule's checks may run in one evaluation, by default (policy.yaml `spec.ruleTimeoutSeconds`). */
export const RULE_TIMEOUT_SECONDS = 10;

/** The deadline in milliseconds of a pack whose `ruleTimeoutSeconds` is `seconds` (vm wants a whole, positive number). */
export function ruleTimeoutMs(seconds: number | undefined): number {
  return Math.max(1, Math.round((seconds ?? RULE_TIMEOUT_SECONDS) * 1000));
}

let context: Context | undefined;
let script: Script | undefined;

/**
 * Runs `fn` within `ms` milliseconds: true when it returned, false when it
 * was still running at the deadline and was stopped there (no `catch` or
 * `finally` of its own runs then). What `fn` throws is thrown again.
 */
export function runWithin(ms: number, fn: () => void): boolean {
  const vm = builtin('node:vm');
  context ??= vm.createContext({ run: undefined });
  script ??= new vm.Script('run()', { filename: 'fleet:rule-deadline' });
  let thrown: { err: unknown } | undefined;
  const saved: unknown = context.run;
  // Nothing fn throws leaves the script: what does is the termination.
  context.run = () => {
    try {
      fn();
    } catch (err) {
      thrown = { err };
    }
  };
  try {
    script.runInContext(context, { timeout: ms });
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return false;
    throw err;
  } finally {
    context.run = saved;
  }
  if (thrown) throw thrown.err;
  return true;
}

/** A duration for people: `10 s`, `0.5 s`. */
export function showSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * Where a function is defined (file, 1-based line and column), through the
 * inspector, and through the script's source map when it has one (a
 * TypeScript module, transformed by tsx); undefined when that cannot be
 * told. Only for the report of a check that ran out of time: it costs
 * tens of milliseconds.
 */
export function functionLocation(fn: unknown): Where | undefined {
  if (typeof fn !== 'function') return undefined;
  let session: Session | undefined;
  const key = `__fleetFunctionLocation${process.pid}`;
  const g = globalThis as Record<string, unknown>;
  try {
    session = new (builtin('node:inspector').Session)();
    session.connect();
    const s = session;
    const post = <T>(method: string, params?: object): T => {
      let out: { err: Error | null; result?: T } | undefined;
      s.post(method, params, (err, result) => (out = { err, result: result as T }));
      if (!out || out.err) throw out?.err ?? new Error(`${method} did not answer`);
      return out.result as T;
    };
    g[key] = fn;
    const { result } = post<{ result: { objectId?: string } }>('Runtime.evaluate', { expression: `globalThis.${key}` });
    const props = post<{ internalProperties?: { name: string; value?: { value?: { scriptId: string; lineNumber: number; columnNumber: number } } }[] }>(
      'Runtime.getProperties',
      { objectId: result.objectId, ownProperties: true },
    );
    const loc = props.internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value;
    if (!loc) return undefined;
    let parsed: { url: string; sourceMapURL?: string } | undefined;
    s.on('Debugger.scriptParsed', (m: { params: { scriptId: string; url: string; sourceMapURL?: string } }) => {
      if (m.params.scriptId === loc.scriptId) parsed = m.params;
    });
    post('Debugger.enable');
    post('Debugger.disable');
    if (!parsed) return undefined;
    const file = fileOf(parsed.url);
    const mapped = throughSourceMap(parsed.sourceMapURL, file, loc.lineNumber, loc.columnNumber);
    if (mapped) return mapped;
    return file ? { file, line: loc.lineNumber + 1, col: loc.columnNumber + 1 } : undefined;
  } catch {
    return undefined;
  } finally {
    delete g[key];
    session?.disconnect();
  }
}

/** A script's path from its URL: a file: URL (tsx adds a query), or tsx's data: URL of a module it took for CommonJS (`…?filePath=<path>`). */
function fileOf(url: string): string | undefined {
  if (url.startsWith('file:')) return builtin('node:url').fileURLToPath(url.replace(/\?.*$/, ''));
  const m = /[?&]filePath=([^&]*)/.exec(url);
  return m ? decodeURIComponent(m[1]).replace(/\?.*$/, '') : undefined;
}

/** A place in a transformed script, in its source: through the inline source map (`url`, a data: URL); relative sources are relative to the script's `file`. */
function throughSourceMap(url: string | undefined, file: string | undefined, line: number, col: number): Where | undefined {
  const m = url && /^data:application\/json(?:;charset=[^;,]*)?;base64,(.*)$/.exec(url);
  if (!m) return undefined;
  const entry = new (builtin('node:module').SourceMap)(JSON.parse(Buffer.from(m[1], 'base64').toString('utf8'))).findEntry(line, col) as {
    originalSource?: string;
    originalLine?: number;
    originalColumn?: number;
  };
  if (!entry.originalSource || entry.originalLine === undefined || entry.originalColumn === undefined) return undefined;
  const path = builtin('node:path');
  const source = fileOf(entry.originalSource) ?? (file && !path.isAbsolute(entry.originalSource) ? path.resolve(path.dirname(file), entry.originalSource) : entry.originalSource);
  return { file: source, line: entry.originalLine + 1, col: entry.originalColumn + 1 };
}
