// loadStack: reads stack.yaml, the fleet files its `specs` globs match and
// its policy pack, and returns validated, defaulted, frozen views of them
// with every problem found, each located at file:line:col. It never stops at
// the first problem and never throws for bad input.
import { realpathSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { matchGlob, noMatchHint } from './glob.ts';
import type { Stack } from '../../specs/types/stack.ts';
import { clip, clipPath, decodeUtf8, diag, fsReason, hasErrors, specialFileKind, sortDiagnostics, unseenRefusal, type Diagnostic, type Where } from '../diags/index.ts';
import { PACK_FILE, loadPack as policyLoadPack, packDirProblem } from '../policy/index.ts';
import type { Enforcement } from '../model/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { checkDuplicateFleets, checkFleet, deepFreeze, toLoadedFleet, type StackContext } from './fleet.ts';
import { showValue, validateDoc } from './schema.ts';
import type { LoadedDataCenter, LoadedFleet, LoadedStack, LoadResult, StackInput } from './types.ts';
import { docWhere, keyWhere, parseYaml, valueWhere, type SourceDoc } from './yaml.ts';
import { AUTHORITY_CLI_TOKEN_ENV, redactUrl } from '../transport/tokens.ts';
import { isPlainRemote } from '../transport/tls.ts';

export const STACK_FILE = 'stack.yaml';
export const STATE_DIR = '.fleet';
export const RECORD_URL_ENV = 'FLEET_RECORD_URL';
/** Set (to 1) by the CLI when RECORD_URL_ENV holds its --record-url flag's value: diagnostics then name the flag. */
export const RECORD_URL_FLAG_ENV = 'FLEET_RECORD_URL_FROM_FLAG';
export const DEFAULT_PARALLELISM = 10;
const ENFORCEMENTS: readonly string[] = ['advisory', 'mandatory', 'disabled'] satisfies Enforcement[];

export type PackLoader = (
  dir: string,
  stackConfig?: Record<string, Record<string, unknown>>,
  opts?: { stackFile?: string },
) => Promise<{ pack?: LoadedPack; diagnostics: Diagnostic[] }>;

export interface LoadOptions {
  /** Environment (FLEET_RECORD_URL); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Folder relative paths are resolved against and files are shown relative to; default process.cwd(). */
  cwd?: string;
  /** Pack loader; default engine/policy's loadPack. Tests pass a hand-built pack through this. */
  loadPack?: PackLoader;
  /**
   * Read the stack file only (its name, record URL, data centers): neither the
   * pack nor the fleet files. For commands that only read the record (state,
   * history, unlock), whose cost must not grow with the number of specs.
   */
  stackOnly?: boolean;
  /**
   * Parse only the fleet files whose text spells one of these fleet names
   * (a file defining a fleet spells its name), for a plan narrowed by
   * --target on a stack of thousands of files: every file is still read, the
   * others are not parsed or checked, and `fleets` holds the fleets of the
   * files parsed. A fleet named here but defined in no parsed file may still
   * be in a skipped one (a name written with YAML escapes): the caller must
   * load the whole stack before concluding it is gone (engine/plan/run.ts).
   */
  onlyFleets?: readonly string[];
  /**
   * Called with the record URL as soon as the stack file gives it (before
   * the pack and the fleet files load), so a caller that will open the
   * record can start what needs no lock meanwhile (engine/record
   * prepareRecord). Only a well-formed URL; not called without one.
   */
  onRecordUrl?: (url: string) => void;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Loads the stack in `stackDir` (a folder holding stack.yaml, or the stack
 * file itself). The result's `stack`, `pack` and `fleets` are usable only when
 * `diagnostics` holds no error; `fleets` holds every fleet document that
 * passed its schema, in file order then document order.
 */
export async function loadStack(stackDir: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;
  const show = (abs: string): string => relative(cwd, abs) || '.';
  const diagnostics: Diagnostic[] = [];
  const inputs: StackInput[] = [];
  const done = (r: Omit<LoadResult, 'diagnostics' | 'inputs'>): LoadResult => {
    const fleets = r.fleets.map((f) => deepFreeze(f));
    const result: LoadResult = { ...r, fleets, inputs: deepFreeze(inputs), diagnostics: sortDiagnostics(diagnostics) };
    if (r.stack) deepFreeze(r.stack);
    // The pack belongs to engine/policy (it holds functions); only the result's own arrays are frozen here.
    Object.freeze(result.fleets);
    Object.freeze(result.diagnostics);
    return Object.freeze(result);
  };

  // The stack file.
  let file = resolve(cwd, stackDir);
  if (!(await isDir(file)) && /\.ya?ml$/.test(file) && (await isFile(file))) {
    // A stack file given directly.
  } else {
    file = join(file, STACK_FILE);
  }
  const dir = dirname(file);
  inputs.push({ file, what: 'stack file' });
  const text = await readText(file, show(file), diagnostics, 'spec.stack-not-found');
  if (text === undefined) return done({ fleets: [] });
  const parsed = parseYaml(text, show(file));
  diagnostics.push(...parsed.diagnostics);
  if (parsed.empty) {
    diagnostics.push(diag('spec.empty-file', 'The stack file holds no document; it needs one document of kind Stack.', { file: show(file), line: 1, col: 1 }));
  }
  const src = parsed.docs[0];
  if (!src) return done({ fleets: [] });
  for (const extra of parsed.docs.slice(1)) {
    diagnostics.push(diag('spec.extra-document', `The stack file holds ${parsed.docs.length} documents; only one (kind Stack) is allowed.`, docWhere(extra)));
  }
  const stackSchemaDiags = validateDoc(src, 'Stack');
  diagnostics.push(...stackSchemaDiags);
  const raw = isObj(src.value) ? src.value : {};
  const spec = isObj(raw.spec) ? raw.spec : {};

  const nameDiag = checkStackName(src, raw);
  if (nameDiag) diagnostics.push(nameDiag);
  const siteDiag = checkSiteName(src, spec);
  if (siteDiag) diagnostics.push(siteDiag);
  const dcDiags = checkDataCenters(src, spec);
  diagnostics.push(...dcDiags);
  const authority = isObj(spec.authority) && typeof spec.authority.address === 'string' ? plainRemote('The authority', spec.authority.address, valueWhere(src, ['spec', 'authority', 'address'])) : undefined;
  if (authority) diagnostics.push(authority);

  // Record URL: the environment overrides the file.
  let recordUrl: string | undefined;
  const envUrl = env[RECORD_URL_ENV];
  if (envUrl) {
    const named = env[RECORD_URL_FLAG_ENV] === '1' ? '--record-url' : RECORD_URL_ENV;
    recordUrl = checkRecordUrl(envUrl, dir, diagnostics, {}, `${named} is ${showValue(redactUrl(envUrl))}`);
  } else if (typeof spec.record === 'string' && /^(pglite|postgres|postgresql):\/\//.test(spec.record)) {
    recordUrl = checkRecordUrl(spec.record, dir, diagnostics, valueWhere(src, ['spec', 'record']), `record is ${showValue(typeof spec.record === 'string' ? redactUrl(spec.record) : spec.record)}`);
  }
  if (recordUrl !== undefined) opts.onRecordUrl?.(recordUrl);

  // The policy pack.
  const packRef = isObj(spec.policyPack) ? spec.policyPack : {};
  // Only well-formed entries go on to the pack: the stack schema already reported the others
  // (a non-mapping, a bad enforcement), and the pack would report them a second time.
  const ruleConfig: Record<string, Record<string, unknown>> = Object.fromEntries(
    Object.entries(isObj(packRef.config) ? packRef.config : {}).filter(
      (e): e is [string, Record<string, unknown>] =>
        isObj(e[1]) && (e[1].enforcement === undefined || ENFORCEMENTS.includes(e[1].enforcement as string)),
    ),
  );
  let packDir: string | undefined;
  let pack: LoadedPack | undefined;
  if (typeof packRef.path === 'string' && packRef.path) {
    packDir = resolve(dir, packRef.path);
    // stackOnly: the pack's path is resolved, the pack not read.
    if (!opts.stackOnly) {
      const problem = packDirProblem(packDir);
      if (problem) {
        // A file is said to be one: "…/policy.yaml does not exist" of the pack's own file sent people looking for a missing file.
        const what = {
          missing: `${show(packDir)} does not exist`,
          'no-pack-file': `${show(packDir)} has no ${PACK_FILE}`,
          'is-pack-file': `${show(packDir)} is the pack's file; policyPack.path names the folder holding it: ${show(dirname(packDir))}`,
          'is-file': `${show(packDir)} is a file, not a folder holding ${PACK_FILE}`,
          unreadable: `${show(packDir)} or its ${PACK_FILE} cannot be read (no permission, or a link loop)`,
        }[problem];
        diagnostics.push(diag('spec.pack-not-found', `policyPack.path ${showValue(packRef.path)}: ${what}.`, valueWhere(src, ['spec', 'policyPack', 'path'])));
      } else {
        const loaded = await (opts.loadPack ?? policyLoadPack)(packDir, ruleConfig, { stackFile: file });
        pack = loaded.pack;
        inputs.push({ file: join(packDir, PACK_FILE), what: 'policy pack file' }, ...(pack?.modules ?? []).map((m) => ({ file: m, what: 'rule module' as const })));
        diagnostics.push(...loaded.diagnostics.map((d) => (d.file !== undefined && isAbsolute(d.file) ? { ...d, file: show(d.file) } : d)));
      }
    }
  }

  // A cloud data center's VMs run as types of the pack's instance-type catalog.
  if (pack && Array.isArray(spec.dataCenters)) {
    spec.dataCenters.forEach((dc, i) => {
      if (!isObj(dc) || (dc.driver !== 'aws' && dc.driver !== 'azure') || typeof dc.name !== 'string') return;
      if (pack.instanceTypes?.[dc.name] === undefined) {
        diagnostics.push(
          diag(
            'spec.no-instance-types',
            `Data center ${showValue(dc.name)} runs the ${dc.driver} driver, but pack ${pack.name} has no instanceTypes entry for it, so no VM size could run there.`,
            valueWhere(src, ['spec', 'dataCenters', i, 'driver']),
          ),
        );
      }
    });
  }

  // Fleet files.
  const files = opts.stackOnly ? [] : await matchSpecs(src, spec, dir, diagnostics, show);
  inputs.push(...files.map((f) => ({ file: f, what: 'fleet spec file' as const })));
  const docs: SourceDoc[] = [];
  // Read concurrently, then handle in sorted order so diagnostics and fleets come out the same every run.
  const readDiags: Diagnostic[][] = files.map(() => []);
  const texts = await Promise.all(files.map((abs, i) => readText(abs, show(abs), readDiags[i], 'spec.read-error')));
  for (const [i, abs] of files.entries()) {
    diagnostics.push(...readDiags[i]);
    const t = texts[i];
    if (t === undefined) continue;
    if (opts.onlyFleets && !opts.onlyFleets.some((name) => t.includes(name))) continue;
    const p = parseYaml(t, show(abs));
    diagnostics.push(...p.diagnostics);
    if (p.empty) {
      diagnostics.push(diag('spec.empty-file', 'The fleet file holds no document; it needs at least one document of kind Fleet.', { file: show(abs), line: 1, col: 1 }));
    }
    docs.push(...p.docs);
  }

  const stackValid = stackSchemaDiags.length === 0 && !hasErrors(dcDiags);
  const ctx = stackValid ? stackContext(raw as unknown as Stack) : undefined;
  const fleets: LoadedFleet[] = [];
  for (const d of docs) {
    const schemaDiags = validateDoc(d, 'Fleet');
    diagnostics.push(...schemaDiags);
    if (schemaDiags.some((x) => x.code === 'spec.api-version' || x.code === 'spec.kind')) continue;
    diagnostics.push(...checkFleet(d, ctx, pack));
    if (schemaDiags.length === 0) fleets.push(toLoadedFleet(d));
  }
  diagnostics.push(...checkDuplicateFleets(docs.filter((d) => validateKindOk(d))));

  let stack: LoadedStack | undefined;
  if (stackValid && recordUrl !== undefined && packDir !== undefined) {
    stack = toLoadedStack(src, raw as unknown as Stack, { file, dir, recordUrl, packDir, ruleConfig });
  }
  return done({ stack, pack, fleets });
}

/** Documents whose apiVersion and kind are right (only those take part in duplicate checks). */
function validateKindOk(d: SourceDoc): boolean {
  const v = isObj(d.value) ? d.value : {};
  return (!('apiVersion' in v) || v.apiVersion === 'fleet/v1') && (!('kind' in v) || v.kind === 'Fleet');
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function readText(
  abs: string,
  shown: string,
  diagnostics: Diagnostic[],
  missingCode: 'spec.stack-not-found' | 'spec.read-error',
): Promise<string | undefined> {
  try {
    // A named pipe or a device (stack.yaml a FIFO, or linked to /dev/zero) is never a file of the stack: read, one
    // hung for ever waiting for a writer, the other took all the memory there was (10 GB and counting).
    const kind = specialFileKind(await stat(abs));
    if (kind !== undefined) {
      diagnostics.push(diag('spec.read-error', `Cannot read ${clipPath(shown)}: it is ${kind}, not a regular file.`, { file: shown }));
      return undefined;
    }
    const decoded = decodeUtf8(await readFile(abs), shown);
    if ('text' in decoded) return decoded.text;
    diagnostics.push(diag('spec.yaml-syntax', decoded.problem, decoded.where));
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' && missingCode === 'spec.stack-not-found') {
      const folder = dirname(abs);
      const why = (await isDir(folder)) ? `${clipPath(shown)} does not exist` : `folder ${clipPath(dirname(shown))} does not exist`;
      diagnostics.push(diag('spec.stack-not-found', `${why}; pass the folder holding ${STACK_FILE} with --stack.`, { file: shown }));
    } else {
      diagnostics.push(diag('spec.read-error', `Cannot read ${clipPath(shown)}: ${fsReason(e)}.`, { file: shown }));
    }
    return undefined;
  }
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/**
 * The diagnostic refusing `address` when it is plain HTTP to another machine:
 * the CLI sends a bearer token with every request to it (a data center's, or
 * its token at the authority), which would cross the network in clear text.
 * Plain HTTP is for services on loopback (DESIGN.md, "Transport").
 */
function plainRemote(who: string, address: string, where: Where): Diagnostic | undefined {
  let u: URL;
  try {
    u = new URL(address);
  } catch {
    return undefined;
  }
  if (!isPlainRemote(u)) return undefined;
  const https = `https://${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  return diag(
    'tls.plain-remote',
    `${who} is reached at ${showValue(redactUrl(address))} in plain HTTP, off loopback: the CLI's bearer token, the plans and the VMs' data would cross the network in clear text. Give its https:// address (${https}), served with --tls-cert and --tls-key; plain http:// is only for a service on this machine.`,
    where,
  );
}

/**
 * Why `name` cannot be one path segment, or undefined when it can. A data
 * center's name becomes a folder and file names (providers/embedded.ts
 * `.fleet/sim/<dc>/`, the sim's `sim-<dc>.json`, a DMZ client's default
 * --state-dir): `../../x` put an embedded data center's state outside the
 * stack folder, and a NUL made `fleet apply` fail with an internal error.
 */
function folderNameProblem(name: string): string | undefined {
  if (name === '.' || name === '..') return 'is a relative folder name';
  if (/[/\\]/.test(name)) return 'holds a path separator';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'holds a control character';
  return undefined;
}

/**
 * The stack's name with a character that does not show (a control, zero-width
 * or direction character), a space at either end, or a letter not composed.
 * It is in every VM's name the data centers are given (`<stack>-<fleet>-<n>`),
 * in the record and in saved plans: `name: "fz\u001b[2J"` validated, was
 * given to the data center in each VM's name, and `fleet state list`
 * wrote the escape to the terminal. The rule of a fleet's owner.
 */
function checkStackName(src: SourceDoc, raw: Record<string, unknown>): Diagnostic | undefined {
  const meta = isObj(raw.metadata) ? raw.metadata : {};
  if (typeof meta.name !== 'string' || meta.name === '') return undefined;
  const refusal = unseenRefusal(
    'metadata.name',
    meta.name,
    "the stack's name is in the name of every VM it makes (given to the data centers), in the record and in saved plans, and would read in a plan or listing as something it is not",
  );
  return refusal ? diag('spec.invalid-value', refusal, valueWhere(src, ['metadata', 'name'])) : undefined;
}

/** Why a data center's name must read as what it is (unseenRefusal). */
const DATA_CENTER_NAME_MATTERS =
  "it is a tag on every VM the data center makes, in the record and in every plan, is matched exactly (placement.dataCenters, placement.near, the image catalog), and would read in a plan or listing as something it is not";

/** Why a data center's hardware trait must read as what it is (unseenRefusal). */
const HARDWARE_TRAIT_MATTERS = "it is matched exactly (a fleet's spec.hardware) and shown in plans' placement, and would read in a plan or review as another trait";

/**
 * The site's name with a character that does not show, a space at either
 * end, or a letter not composed: placement.near names it, and a plan's
 * placement explanation shows it. As a data center's name (checkDataCenters).
 */
function checkSiteName(src: SourceDoc, spec: Record<string, unknown>): Diagnostic | undefined {
  const site = isObj(spec.site) ? spec.site : {};
  if (typeof site.name !== 'string' || site.name === '') return undefined;
  const refusal = unseenRefusal(
    'spec.site.name',
    site.name,
    "it is matched exactly (a fleet's placement.near) and shown in plans' placement, and would read in a plan or review as something it is not",
  );
  return refusal ? diag('spec.invalid-value', refusal, valueWhere(src, ['spec', 'site', 'name'])) : undefined;
}

/** Duplicate data center names (each names the first entry's location), names that are not one path segment or do not read as what they are, and malformed addresses. */
function checkDataCenters(src: SourceDoc, spec: Record<string, unknown>): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (!Array.isArray(spec.dataCenters)) return out;
  const first = new Map<string, Where>();
  spec.dataCenters.forEach((dc, i) => {
    if (!isObj(dc) || typeof dc.name !== 'string') return;
    const unusable = folderNameProblem(dc.name);
    // A control character is both: said once, as a folder name's.
    const unreadable = unusable ? undefined : unseenRefusal('Data center name', dc.name, DATA_CENTER_NAME_MATTERS);
    if (unusable) {
      out.push(
        diag(
          'spec.invalid-value',
          `Data center name ${showValue(dc.name)} ${unusable}. The name is also a folder and file name (the simulated data center's state under .fleet/sim/, a DMZ client's state folder): use letters, digits, dashes, dots or underscores, with no / or \\ or control character, and not . or .. alone.`,
          valueWhere(src, ['spec', 'dataCenters', i, 'name']),
        ),
      );
    } else if (unreadable) out.push(diag('spec.invalid-value', unreadable, valueWhere(src, ['spec', 'dataCenters', i, 'name'])));
    // A trait is matched exactly against a fleet's spec.hardware and shown in plans' placement: "general" and a
    // zero-width space offered another trait than general, and read as general.
    if (Array.isArray(dc.hardware)) {
      dc.hardware.forEach((t, j) => {
        const refusal = typeof t === 'string' ? unseenRefusal('Hardware trait', t, HARDWARE_TRAIT_MATTERS) : undefined;
        if (refusal) out.push(diag('spec.invalid-value', refusal, valueWhere(src, ['spec', 'dataCenters', i, 'hardware', j])));
      });
    }
    if (typeof dc.address === 'string' && dc.address && dc.address !== 'embedded' && !isHttpUrl(dc.address)) {
      out.push(
        diag(
          'spec.invalid-value',
          `Data center ${showValue(dc.name)} has address ${showValue(dc.address)}; it must be embedded or the DMZ client's http(s) URL, for example https://dmz.${clip(dc.name)}.example:8443.`,
          valueWhere(src, ['spec', 'dataCenters', i, 'address']),
        ),
      );
    }
    const plain = typeof dc.address === 'string' ? plainRemote(`Data center ${showValue(dc.name)}`, dc.address, valueWhere(src, ['spec', 'dataCenters', i, 'address'])) : undefined;
    if (plain) out.push(plain);
    if (dc.sim !== undefined && typeof dc.address === 'string' && dc.address !== 'embedded') {
      out.push(
        diag(
          'spec.sim-ignored',
          `Data center ${showValue(dc.name)} is reached at ${showValue(dc.address)}: plan and apply start no simulator for it, so its sim settings are used only by \`fleet serve dmz-client --data-center ${clip(dc.name)}\` with the sim driver, wherever that runs.`,
          keyWhere(src, ['spec', 'dataCenters', i, 'sim']),
        ),
      );
    }
    // A cloud driver runs in a deployed DMZ client (by URL) and needs its credential broker's settings.
    const driver = typeof dc.driver === 'string' ? dc.driver : 'sim';
    // A name the schema refused (its driver enum) is reported there, once: judged as a driver here it drew wrong errors.
    const known = driver === 'sim' || driver === 'aws' || driver === 'azure';
    if (known && driver !== 'sim' && dc.address === 'embedded') {
      out.push(
        diag('spec.invalid-value', `Data center ${showValue(dc.name)} runs the ${driver} driver, so it must be reached by its DMZ client's URL, not embedded.`, valueWhere(src, ['spec', 'dataCenters', i, 'address'])),
      );
    }
    if ((driver === 'aws' || driver === 'azure') && dc[driver] === undefined) {
      out.push(
        diag('spec.missing-field', `Data center ${showValue(dc.name)} runs the ${driver} driver: add its ${driver} block (how the authority brokers its credentials).`, valueWhere(src, ['spec', 'dataCenters', i, 'driver'])),
      );
    }
    for (const other of ['aws', 'azure'] as const) {
      if (known && dc[other] !== undefined && driver !== other) {
        out.push(diag('spec.invalid-value', `Data center ${showValue(dc.name)} has an ${other} block but runs the ${driver} driver; set driver: ${other} or remove the block.`, keyWhere(src, ['spec', 'dataCenters', i, other])));
      }
    }
    const at = valueWhere(src, ['spec', 'dataCenters', i, 'name']);
    const prev = first.get(dc.name);
    if (prev) {
      out.push(
        diag('spec.duplicate-data-center', `Data center ${showValue(dc.name)} is already defined at ${prev.file}:${prev.line}:${prev.col}.`, at),
      );
    } else first.set(dc.name, at);
  });
  return out;
}

/**
 * Checks a record URL and returns it with a relative `pglite://` folder made
 * absolute against the stack folder (`pglite://.fleet/record` ->
 * `pglite:///abs/stacks/local/.fleet/record`), or undefined when malformed.
 */
function checkRecordUrl(url: string, dir: string, diagnostics: Diagnostic[], where: Where, what: string): string | undefined {
  const bad = (why: string): undefined => {
    diagnostics.push(diag('spec.record-url', `${what}: ${why}.`, where));
    return undefined;
  };
  const m = /^(pglite|postgres|postgresql):\/\/(.*)$/.exec(url);
  if (!m) return bad('it must start with pglite://, postgres:// or postgresql://');
  if (m[1] === 'pglite') {
    const path = m[2];
    if (!path) return bad('pglite:// needs a folder, for example pglite://.fleet/record');
    return `pglite://${isAbsolute(path) ? path : resolve(dir, path)}`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return bad('it is not a well-formed URL (postgres://user@host:5432/db)');
  }
  if (!parsed.hostname) return bad('it names no host (postgres://user@host:5432/db)');
  if (parsed.port && !/^\d+$/.test(parsed.port)) return bad(`port ${parsed.port} is not a number`);
  return url;
}

async function matchSpecs(src: SourceDoc, spec: Record<string, unknown>, dir: string, diagnostics: Diagnostic[], show: (abs: string) => string): Promise<string[]> {
  if (!Array.isArray(spec.specs)) return [];
  const all = new Set<string>();
  for (const [i, glob] of spec.specs.entries()) {
    if (typeof glob !== 'string' || !glob) continue;
    let found: string[];
    try {
      found = await matchGlob(glob, dir);
    } catch (err) {
      // A folder the glob must list and cannot (no permission, a link loop): the file system's error, at the glob.
      const { code, path } = err as NodeJS.ErrnoException;
      if (typeof code !== 'string') throw err;
      const folder = typeof path === 'string' ? ` the folder ${show(resolve(dir, path))}` : '';
      diagnostics.push(diag('spec.read-error', `specs glob ${showValue(glob)}: cannot read${folder}: ${fsReason(err)}.`, valueWhere(src, ['spec', 'specs', i])));
      continue;
    }
    if (found.length === 0) {
      const { missing, fix } = await noMatchHint(glob, dir);
      const why = missing ? `there is no ${missing.kind} ${showValue(missing.name)} ${missing.in === '' ? 'beside the stack file' : `in ${clipPath(missing.in)}`}` : '';
      const meant = fix ? `did you mean ${showValue(fix.glob)}? It matches ${fix.files} file${fix.files === 1 ? '' : 's'}.` : '';
      const hint = why && meant ? `: ${why}; ${meant}` : why ? `: ${why}.` : meant ? `: ${meant}` : '.';
      diagnostics.push(diag('spec.glob-no-match', `specs glob ${showValue(glob)} matches no file (globs are relative to the stack file)${hint}`, valueWhere(src, ['spec', 'specs', i])));
    }
    for (const f of found) all.add(resolve(f));
  }
  return onePathPerFile([...all].sort());
}

/**
 * One path per file (`paths` sorted): a file reached by several paths (a
 * symbolic link to it, or to a folder a `**` glob also reaches) is one
 * definition, not a fleet defined twice. A link loop (specs/loop -> ..)
 * made every fleet of the folder a duplicate of itself some 40 times over.
 * The file's own path is kept when it is among them, else the first. A
 * realpath per file (native, ~5 µs) is the price.
 */
function onePathPerFile(paths: string[]): string[] {
  const byReal = new Map<string, string>();
  for (const p of paths) {
    let real: string;
    try {
      real = realpathSync.native(p);
    } catch {
      real = p;
    }
    const kept = byReal.get(real);
    if (kept === undefined || (p === real && kept !== real)) byReal.set(real, p);
  }
  return [...byReal.values()].sort();
}

function stackContext(raw: Stack): StackContext {
  return {
    siteName: raw.spec.site.name,
    dataCenters: new Map(raw.spec.dataCenters.map((dc) => [dc.name, dc.hardware ?? []])),
    cloudDrivers: new Map(raw.spec.dataCenters.filter((dc) => dc.driver !== undefined && dc.driver !== 'sim').map((dc) => [dc.name, dc.driver as string])),
  };
}

function toLoadedStack(
  src: SourceDoc,
  raw: Stack,
  p: { file: string; dir: string; recordUrl: string; packDir: string; ruleConfig: Record<string, Record<string, unknown>> },
): LoadedStack {
  const s = raw.spec;
  const dataCenters: LoadedDataCenter[] = s.dataCenters.map((dc, i) => {
    const out: LoadedDataCenter = {
      name: dc.name,
      address: dc.address,
      location: { lat: dc.location.lat, lon: dc.location.lon },
      hardware: [...(dc.hardware ?? [])],
      capacity: { ...dc.capacity },
      where: valueWhere(src, ['spec', 'dataCenters', i]),
    };
    if (dc.auth) out.auth = dc.auth;
    if (dc.driver) out.driver = dc.driver;
    if (dc.aws) out.aws = dc.aws;
    if (dc.azure) out.azure = dc.azure;
    if (dc.sim) out.sim = dc.sim;
    return out;
  });
  return {
    name: raw.metadata.name,
    file: p.file,
    dir: p.dir,
    recordUrl: p.recordUrl,
    stateDir: join(p.dir, STATE_DIR),
    packDir: p.packDir,
    ruleConfig: p.ruleConfig,
    site: { name: s.site.name, location: { lat: s.site.location.lat, lon: s.site.location.lon } },
    dataCenters,
    apply: { parallelism: s.apply?.parallelism ?? DEFAULT_PARALLELISM, lockTimeoutSeconds: s.apply?.lockTimeoutSeconds ?? 0 },
    ...(s.authority
      ? {
          authority: {
            address: s.authority.address,
            tokenEnv: s.authority.tokenEnv ?? AUTHORITY_CLI_TOKEN_ENV,
            ...(s.authority.caFile ? { caFile: resolve(p.dir, s.authority.caFile) } : {}),
            ...(s.authority.certFile ? { certFile: resolve(p.dir, s.authority.certFile) } : {}),
            ...(s.authority.keyFile ? { keyFile: resolve(p.dir, s.authority.keyFile) } : {}),
            where: valueWhere(src, ['spec', 'authority']),
          },
        }
      : {}),
    raw,
  };
}
