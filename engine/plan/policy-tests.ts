// `fleet policy test`: fixture cases under PACKDIR/tests/*.yaml, each a small
// stack, its fleet specs, a starting record and the violations and grants the
// real planner must produce with this pack. See docs/policy.md, "Policy tests".
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { LineCounter, isMap, isNode, isScalar, isSeq, parseAllDocuments, stringify } from 'yaml';
import { clip, decodeUtf8, diag, fsReason, quote, hasErrors, sortDiagnostics, specialFileKind, unseenRefusal, type Diagnostic, type Where } from '../diags/index.ts';
import { parseVmAddress, type PlanDocument } from '../model/index.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadResult } from '../spec/types.ts';
import { schemaDiagnostics } from '../policy/load.ts';
import { UNCHECKED_KEYS } from '../diags/yaml.ts';
import { parseYaml } from '../policy/yamlpos.ts';
import { loadStack, specHash } from '../spec/index.ts';
import { computePlan } from './planner.ts';
import { targetFleet } from './scope.ts';

export const TESTS_DIR = 'tests';

const sizeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cpu', 'memoryGiB', 'diskGiB'],
  properties: { cpu: { type: 'number' }, memoryGiB: { type: 'number' }, diskGiB: { type: 'number' } },
};
const strings = { type: 'array', items: { type: 'string' } };

/** Schema of one test case file. */
export const TEST_CASE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['stack', 'specs', 'expect'],
  properties: {
    description: { type: 'string' },
    stack: {
      type: 'object',
      additionalProperties: false,
      required: ['dataCenters'],
      properties: {
        name: { type: 'string', minLength: 1 },
        site: { type: 'object' },
        dataCenters: { type: 'array', minItems: 1, items: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
        policyPack: { type: 'object', additionalProperties: false, properties: { config: { type: 'object' } } },
      },
    },
    specs: { type: 'array', items: { type: 'object' } },
    record: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['address', 'dataCenter', 'state'],
        properties: {
          // What parseVmAddress (engine/model) accepts: an index without sign or leading zeros.
          address: { type: 'string', pattern: '^.+/(0|[1-9]\\d{0,8})$' },
          dataCenter: { type: 'string' },
          state: { type: 'string' },
          image: { type: 'string' },
          size: sizeSchema,
          encryptedDisk: { type: 'boolean' },
          owner: { type: 'string' },
        },
      },
    },
    options: {
      type: 'object',
      additionalProperties: false,
      properties: { allowDestroy: strings, targets: strings, excludes: strings },
    },
    expect: {
      type: 'object',
      additionalProperties: false,
      properties: {
        violations: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['policy', 'level', 'address'],
            properties: { policy: { type: 'string' }, level: { enum: ['advisory', 'mandatory'] }, address: { type: 'string' } },
          },
        },
        grants: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['fleet', 'requested', 'granted'],
            properties: { fleet: { type: 'string' }, requested: { type: 'integer' }, granted: { type: 'integer' } },
          },
        },
      },
    },
  },
} as const;

interface CaseSize {
  cpu: number;
  memoryGiB: number;
  diskGiB: number;
}

export interface PolicyTestCase {
  description?: string;
  stack: {
    name?: string;
    site?: Record<string, unknown>;
    dataCenters: Record<string, unknown>[];
    policyPack?: { config?: Record<string, Record<string, unknown>> };
  };
  specs: Record<string, unknown>[];
  record?: { address: string; dataCenter: string; state: string; image?: string; size?: CaseSize; encryptedDisk?: boolean; owner?: string }[];
  options?: { allowDestroy?: string[]; targets?: string[]; excludes?: string[] };
  expect: {
    violations?: { policy: string; level: string; address: string }[];
    grants?: { fleet: string; requested: number; granted: number }[];
  };
}

export interface PolicyTestResult {
  /** The case's file name without `.yaml`. */
  name: string;
  file: string;
  passed: boolean;
  /** `- expected` / `+ actual` lines for what differs; empty when passed. */
  diff: string[];
  /** Why the case could not run (invalid case, stack or specs), or a custom rule that did not finish in time (policy.rule-timeout); such a case fails. */
  diagnostics: Diagnostic[];
  plan?: PlanDocument;
}

/** The planner entry the runner calls; engine/plan's computePlan unless a test passes another. */
export type PlanFn = (input: {
  stack: NonNullable<LoadResult['stack']>;
  pack: NonNullable<LoadResult['pack']>;
  fleets: LoadResult['fleets'];
  record: VmRow[];
  fleetVersions: Record<string, number>;
  /** Owner of each fleet the case's record names one for (its rows' `owner`). */
  owners?: Record<string, string>;
  options: PlanDocument['options'];
  now?: Date;
  id?: string;
  /** Takes what the run reports beside the plan (policy.rule-timeout). */
  diagnostics?: Diagnostic[];
}) => PlanDocument;

export interface RunOptions {
  plan?: PlanFn;
  /** Only cases whose name is listed. */
  only?: readonly string[];
}

const DEFAULT_SITE = { name: 'charlotte', location: { lat: 35.2271, lon: -80.8431 } };

function stackYaml(c: PolicyTestCase, packDir: string): string {
  const dataCenters = c.stack.dataCenters.map((dc) => ({
    address: 'embedded',
    location: DEFAULT_SITE.location,
    capacity: {},
    ...dc,
  }));
  const policyPack: Record<string, unknown> = { path: packDir };
  if (c.stack.policyPack?.config) policyPack.config = c.stack.policyPack.config;
  return stringify({
    apiVersion: 'fleet/v1',
    kind: 'Stack',
    metadata: { name: c.stack.name ?? 'policy-test' },
    spec: { specs: ['specs/*.yaml'], record: 'pglite://.fleet/record', policyPack, site: c.stack.site ?? DEFAULT_SITE, dataCenters },
  });
}

/**
 * Where, in the case file, the node at line:col of the written specs file
 * is: the written file is the case's `specs` entries, each stringified, one
 * document each, so a node's path in its document is its path below
 * `specs[i]` in the case.
 */
function caseSpecsWhere(text: string, where: (path: (string | number)[]) => Where): (line: number, col: number) => Where {
  const lines = new LineCounter();
  // UNCHECKED_KEYS: this text is stringified from the case (no key twice), and the parser's own check is quadratic.
  const docs = parseAllDocuments(text, { lineCounter: lines, ...UNCHECKED_KEYS });
  return (line, col) => {
    const offset = (lines.lineStarts[line - 1] ?? 0) + col - 1;
    const i = docs.findIndex((d) => offset >= d.range[0] && offset < d.range[2]);
    if (i < 0) return where(['specs']);
    return where(['specs', i, ...pathAt(docs[i].contents, offset)]);
  };
}

/** The path of the deepest node holding `offset` (a key counts as its entry). */
function pathAt(node: unknown, offset: number): (string | number)[] {
  const holds = (n: unknown): boolean => isNode(n) && !!n.range && offset >= n.range[0] && offset < n.range[2];
  if (isMap(node)) {
    for (const p of node.items) {
      const key = isScalar(p.key) ? String(p.key.value) : String(p.key);
      if (holds(p.key)) return [key];
      if (holds(p.value)) return [key, ...pathAt(p.value, offset)];
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) if (holds(item)) return [i, ...pathAt(item, offset)];
  }
  return [];
}

/**
 * A case's record rows and options beyond their schema: a state the pack
 * does not have (a typo: Runing), a data center the case's stack does not
 * have, an address given twice, or options naming a fleet neither the specs
 * nor the record have was planned as it was, so the case tested something
 * else than it said, and could pass.
 */
function checkRecord(c: PolicyTestCase, loaded: LoadResult, where: (path: (string | number)[]) => Where): Diagnostic[] {
  const out: Diagnostic[] = [];
  const states = loaded.pack!.lifecycle.states;
  const dcs = loaded.stack!.dataCenters.map((d) => d.name);
  const first = new Map<string, number>();
  const owners = new Map<string, { owner: string; row: number }>();
  (c.record ?? []).forEach((r, i) => {
    if (!states.includes(r.state)) {
      out.push(diag('policy.test-case', `record[${i}].state ${quote(r.state)} is not a state of pack ${loaded.pack!.name}'s lifecycle (${states.join(', ')}).`, where(['record', i, 'state'])));
    }
    if (!dcs.includes(r.dataCenter)) {
      out.push(diag('policy.test-case', `record[${i}].dataCenter ${quote(r.dataCenter)} is not a data center of the case's stack (${dcs.join(', ')}).`, where(['record', i, 'dataCenter'])));
    }
    // A fleet's owner that does not show is refused (its fleet file, the authority): a row holding one tested a record no fleet can make, read as another owner's.
    const unreadable = r.owner === undefined ? undefined : unseenRefusal(`record[${i}].owner`, r.owner, "a fleet's owner so written is refused (it is matched exactly, and would read in a plan or review as another), so the case would test a record no fleet can make");
    if (unreadable) out.push(diag('policy.test-case', unreadable, where(['record', i, 'owner'])));
    const owner = r.owner !== undefined && !unreadable ? owners.get(parseVmAddress(r.address)!.fleet) : undefined;
    if (owner && owner.owner !== r.owner) {
      out.push(
        diag(
          'policy.test-case',
          `record[${i}].owner ${quote(r.owner!)} is not record[${owner.row}]'s owner of fleet ${clip(parseVmAddress(r.address)!.fleet)} (${quote(owner.owner)}): the record holds one owner per fleet.`,
          where(['record', i, 'owner']),
        ),
      );
    } else if (r.owner !== undefined && !owner && !unreadable) owners.set(parseVmAddress(r.address)!.fleet, { owner: r.owner, row: i });
    const prev = first.get(r.address);
    if (prev !== undefined) {
      out.push(diag('policy.test-case', `record[${i}].address ${quote(r.address)} is also record[${prev}]'s: the record holds one live VM per address.`, where(['record', i, 'address'])));
    } else first.set(r.address, i);
  });
  // As `fleet plan` refuses (plan.unknown-fleet): a case targeting a misspelt fleet planned nothing and passed.
  const fleets = [...new Set([...loaded.fleets.map((f) => f.name), ...(c.record ?? []).map((r) => parseVmAddress(r.address)!.fleet)])].sort();
  for (const key of ['targets', 'excludes', 'allowDestroy'] as const) {
    (c.options?.[key] ?? []).forEach((name, i) => {
      const fleet = key === 'targets' ? targetFleet(name) : name;
      if (!fleets.includes(fleet)) {
        out.push(diag('policy.test-case', `options.${key}[${i}] names no fleet of the case's specs or record (${fleets.map((f) => clip(f)).join(', ') || 'none'}): ${quote(name)}.`, where(['options', key, i])));
      }
    });
  }
  return out;
}

function recordRows(c: PolicyTestCase, loaded: LoadResult, specHash: (f: { image: string; size: CaseSize; hardware: readonly string[]; encryptedDisk: boolean }) => string): VmRow[] {
  const stack = loaded.stack!.name;
  const at = '2026-01-01T00:00:00.000Z';
  return (c.record ?? []).map((r, i) => {
    // The case file's schema only lets addresses through.
    const { fleet, index } = parseVmAddress(r.address)!;
    const spec = loaded.fleets.find((f) => f.name === fleet);
    const image = r.image ?? spec?.image ?? 'ubuntu-22.04';
    const size = r.size ?? spec?.size ?? { cpu: 1, memoryGiB: 1, diskGiB: 10 };
    const encryptedDisk = r.encryptedDisk ?? spec?.encryptedDisk ?? false;
    const hardware = spec?.hardware ?? [];
    return {
      id: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
      stack,
      fleet,
      index,
      address: r.address,
      name: `${stack}-${fleet}-${index}`,
      dataCenter: r.dataCenter,
      state: r.state,
      desiredState: spec?.state ?? r.state,
      specHash: specHash({ image, size, hardware, encryptedDisk }),
      image,
      realImage: loaded.pack?.images[image]?.[r.dataCenter] ?? null,
      size: { ...size },
      encryptedDisk,
      cloudId: `sim-${fleet}-${index}`,
      version: 1,
      createdAt: at,
      updatedAt: at,
      retiredAt: null,
      deposed: false,
    };
  });
}

type Row = Record<string, string | number>;
const show = (r: Row): string => `{ ${Object.entries(r).map(([k, v]) => `${k}: ${v}`).join(', ')} }`;

/** Multiset difference of expected and actual rows, as `- expected` / `+ actual` lines. */
export function diffRows(what: string, expected: Row[], actual: Row[]): string[] {
  const key = (r: Row): string => show(r);
  const left = new Map<string, number>();
  for (const r of actual) left.set(key(r), (left.get(key(r)) ?? 0) + 1);
  const missing: string[] = [];
  for (const r of expected) {
    const n = left.get(key(r)) ?? 0;
    if (n > 0) left.set(key(r), n - 1);
    else missing.push(key(r));
  }
  const extra = [...left].flatMap(([k, n]) => Array<string>(n).fill(k));
  if (!missing.length && !extra.length) return [];
  return [`${what}:`, ...missing.sort().map((k) => `  - expected ${k}`), ...extra.sort().map((k) => `  + actual   ${k}`)];
}

/** The owner of each fleet the case's record rows name one for (checkRecord: one per fleet), as the record's fleet rows hold it. */
function recordOwners(c: PolicyTestCase): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of c.record ?? []) if (r.owner !== undefined) out[parseVmAddress(r.address)!.fleet] ??= r.owner;
  return out;
}

/** Runs one case file against the pack. Never throws for a bad case: it fails with diagnostics. */
export async function runPolicyCase(packDir: string, file: string, plan: PlanFn): Promise<PolicyTestResult> {
  const name = basename(file).replace(/\.ya?ml$/, '');
  const result: PolicyTestResult = { name, file, passed: false, diff: [], diagnostics: [] };
  let bytes: Buffer;
  try {
    // A named pipe (or a link to /dev/zero) named *.yaml in tests/: the run waited for a writer for ever (ate all memory).
    const kind = specialFileKind(await stat(file));
    if (kind !== undefined) {
      result.diagnostics = [diag('policy.read-error', `The case file cannot be read: it is ${kind}, not a regular file.`, { file })];
      return result;
    }
    bytes = await readFile(file);
  } catch (err) {
    result.diagnostics = [diag('policy.read-error', `The case file cannot be read: ${fsReason(err)}.`, { file })];
    return result;
  }
  const decoded = decodeUtf8(bytes, file);
  if (!('text' in decoded)) {
    result.diagnostics = [diag('policy.yaml-syntax', decoded.problem, decoded.where)];
    return result;
  }
  const y = parseYaml(decoded.text, file);
  if (y.errors.length) {
    result.diagnostics = y.errors.map((e) => diag('policy.yaml-syntax', e.message, e.where));
    return result;
  }
  const validate = new Ajv({ allErrors: true, strict: false, verbose: true }).compile(TEST_CASE_SCHEMA);
  if (!validate(y.value)) {
    result.diagnostics = sortDiagnostics(schemaDiagnostics(validate.errors ?? [], y.where, 'policy.test-case'));
    return result;
  }
  const c = y.value as PolicyTestCase;

  const dir = await mkdtemp(join(tmpdir(), 'fleet-policy-test-'));
  try {
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml(c, resolve(packDir)));
    const specsText = c.specs.length ? c.specs.map((s) => stringify(s)).join('---\n') : '# no fleets\n';
    await writeFile(join(dir, 'specs', 'fleets.yaml'), specsText);
    const loaded = await loadStack(dir, { cwd: dir, env: {} });
    const loadDiags = c.specs.length ? loaded.diagnostics : loaded.diagnostics.filter((d) => d.file !== join('specs', 'fleets.yaml'));
    if (hasErrors(loadDiags) || !loaded.stack || !loaded.pack) {
      // The temp files are gone after the run: point at the case file, naming the part;
      // a spec's problem at its place there (the written file's positions are not the case's).
      const inSpecs = caseSpecsWhere(specsText, y.where);
      result.diagnostics = loadDiags.map((d) => {
        const specs = d.file?.startsWith('specs');
        const at: Where = specs && d.line !== undefined ? inSpecs(d.line, d.col ?? 1) : y.where([specs ? 'specs' : 'stack']);
        return diag(d.code, `${d.detail} (case ${name}, ${specs ? 'specs' : 'stack'})`, { ...at, file, address: d.address }, d.severity);
      });
      return result;
    }
    const recordDiags = checkRecord(c, loaded, y.where);
    if (recordDiags.length) {
      result.diagnostics = recordDiags;
      return result;
    }
    const record = recordRows(c, loaded, specHash);
    const opts = c.options ?? {};
    const reported: Diagnostic[] = [];
    const doc = plan({
      stack: loaded.stack,
      pack: loaded.pack,
      fleets: [...loaded.fleets],
      record,
      fleetVersions: {},
      // A record row's owner is its fleet row's: quotas count the fleet under it, with or without a spec.
      ...(Object.keys(recordOwners(c)).length ? { owners: recordOwners(c) } : {}),
      options: { targets: opts.targets ?? [], excludes: opts.excludes ?? [], allowDestroy: opts.allowDestroy ?? [], refresh: false },
      now: new Date('2026-01-01T00:00:00Z'),
      id: `policy-test-${name}`,
      diagnostics: reported,
    });
    result.plan = doc;
    // A custom rule stopped at its deadline (policy.rule-timeout): said beside the violation it left.
    if (reported.length) result.diagnostics = reported;
    const v = (xs: { policy: string; level: string; address: string }[]): Row[] => xs.map((x) => ({ policy: x.policy, level: x.level, address: x.address }));
    const g = (xs: { fleet: string; requested: number; granted: number }[]): Row[] => xs.map((x) => ({ fleet: x.fleet, requested: x.requested, granted: x.granted }));
    result.diff = [
      ...diffRows('violations', v(c.expect.violations ?? []), v(doc.policy.violations)),
      ...diffRows('grants', g(c.expect.grants ?? []), g(doc.policy.grants)),
    ];
    // A case with no member to judge that expects nothing passes whatever the pack says: it tests nothing.
    const expectsNothing = !c.expect.violations?.length && !c.expect.grants?.length;
    if (expectsNothing && doc.changes.length === 0 && doc.unchanged.length === 0 && doc.policy.violations.length === 0 && doc.policy.grants.length === 0) {
      result.diagnostics = [
        ...result.diagnostics,
        diag(
          'policy.test-case',
          `Case ${name} plans no member and expects no violation or grant: it would pass whatever the pack says. Give it fleets with members (specs, a count above 0) or record VMs, and the violations or grants the pack should give them.`,
          y.where(['expect']),
        ),
      ];
      result.passed = false;
      return result;
    }
    // A rule stopped at its deadline fails the case even where the case expects its violation: whether it finishes is the machine's speed, not the pack's policy.
    result.passed = result.diff.length === 0 && reported.length === 0;
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs every case under `packDir/tests/`, in file name order. Diagnostics
 * are for the run as a whole (no tests folder, no planner); a case's own
 * problems are in its result.
 */
export async function runPolicyTests(packDir: string, opts: RunOptions = {}): Promise<{ results: PolicyTestResult[]; diagnostics: Diagnostic[] }> {
  const dir = join(resolve(packDir), TESTS_DIR);
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { results: [], diagnostics: [diag('policy.pack-missing', `No test folder: ${dir} does not exist.`, { file: dir })] };
    return { results: [], diagnostics: [diag('policy.read-error', `The pack's test folder cannot be read: ${fsReason(err)}.`, { file: dir })] };
  }
  if (files.length === 0) {
    // "0 passed, 0 failed", exit 0, was a pass for a pack whose cases were all misnamed (web.yaml.txt) or in a subfolder.
    return {
      results: [],
      diagnostics: [diag('policy.no-tests', `The pack's test folder ${dir} holds no test case (a *.yaml or *.yml file directly in it): \`fleet policy test\` would pass having tested nothing.`, { file: dir })],
    };
  }
  const plan = opts.plan ?? computePlan;
  const results: PolicyTestResult[] = [];
  for (const f of files) {
    const name = f.replace(/\.ya?ml$/, '');
    if (opts.only && !opts.only.includes(name)) continue;
    results.push(await runPolicyCase(packDir, join(dir, f), plan));
  }
  return { results, diagnostics: [] };
}
