// Loading a policy pack: policy.yaml (schema-checked, diagram-checked), its
// custom rule modules, and the rule settings merged from pack and stack.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';
import type { PolicyPack } from '../../specs/types/policy-pack.ts';
import { PolicyPack as packValidator } from '../../specs/validators/policy-pack.js';
import { byName as builtinRuleValidators } from '../../specs/validators/rules.js';
import { clip, clipPath, decodeUtf8, diag, didYouMean, quote, fsReason, hasErrors, unseenRefusal, visible, type Diagnostic, type Where } from '../diags/index.ts';
import { ENFORCEMENTS, type Enforcement } from '../model/index.ts';
import { buildLifecycle, checkLifecycle } from './lifecycle.ts';
import { PACK_FILE, packDirProblem } from './pack-dir.ts';
import { describeThrown } from './evaluate.ts';
import { BUILTIN_RULES } from './rules/builtin.ts';
import type { LoadedPack, ResolvedRule, Rule } from './types.ts';
import { parseYaml, pointerPath, type PositionedDoc } from './yamlpos.ts';

/**
 * A TypeScript rule module is loaded through tsx's tsImport, itself loaded
 * only when a pack has such a module (the built CLI, bin/build.mjs, does not
 * pay for tsx otherwise).
 *
 * tsImport rather than the global hooks: a pack kept in a repository of its
 * own has no package.json with "type": "module" above it, so Node takes its
 * .ts modules for CommonJS, and the ESM hooks that `tsx/esm/api`'s register
 * installs do not reach them: the built CLI and the sources alike said
 * "Importing rules/max-cpu.ts failed: Unexpected token ':'". tsImport loads
 * either kind, through a loader of its own.
 */
const TS_MODULE = /\.[mc]?ts$/;
async function importModule(file: string): Promise<unknown> {
  if (TS_MODULE.test(file)) {
    const { tsImport } = await import('tsx/esm/api');
    return cjsInterop(await tsImport(pathToFileURL(file).href, import.meta.url));
  }
  return import(pathToFileURL(file).href);
}

/**
 * A module Node took for CommonJS comes back as `{ default: module.exports }`,
 * and a TypeScript `export default rule` compiled to CommonJS is
 * `module.exports.default`: its default export is one level further in.
 */
function cjsInterop(mod: unknown): unknown {
  const inner = (mod as { default?: unknown }).default;
  if (inner && typeof inner === 'object' && (inner as { __esModule?: unknown }).__esModule === true && 'default' in inner) return inner;
  return mod;
}

/** How long a rule module may take to load: its top-level code, awaits included. */
export const MODULE_LOAD_TIMEOUT_MS = 30_000;

/** A module import that did not settle; its message goes after "Importing <module> ". */
class ModuleStuck extends Error {}

/**
 * Imports a rule module, or says why it never finishes. A module awaiting
 * at its top level what never comes (a fetch with no timeout) hung every
 * command that loads the pack; one awaiting what nothing can resolve (a
 * promise no one settles) left Node nothing to run, and the CLI exited 13
 * without a word. The timer is unref'd so that, in the second case, the
 * loop empties and 'beforeExit' says so at once.
 */
async function importWithin(file: string, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  let onBeforeExit: (() => void) | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ModuleStuck(`did not finish within ${ms / 1000} s: its top-level code still waits (on a network call, a timer, a promise). A rule module must load without waiting on anything outside it.`)),
      ms,
    );
    timer.unref();
    onBeforeExit = () => reject(new ModuleStuck('never finished: it waits at its top level on what nothing will resolve (a promise no one settles).'));
    process.once('beforeExit', onBeforeExit);
  });
  try {
    return await Promise.race([importModule(file), stuck]);
  } finally {
    clearTimeout(timer);
    process.removeListener('beforeExit', onBeforeExit!);
  }
}

/**
 * The validator of a rule's settings: the built-in rules' are compiled by
 * `npm run gen:types` (specs/validators/rules.js); a pack's own rules' are
 * compiled here, with ajv loaded only then.
 */
async function ruleConfigValidator(rule: Rule, ajv: { instance?: Ajv }): Promise<ValidateFunction> {
  if (BUILTIN_RULES.includes(rule) && builtinRuleValidators[rule.name]) return builtinRuleValidators[rule.name];
  ajv.instance ??= new (await import('ajv')).Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true });
  return ajv.instance.compile(rule.configSchema as object);
}

/** The value at `path` in `root` (undefined where there is none). */
function valueIn(root: unknown, path: readonly (string | number)[]): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[String(seg)];
  }
  return node;
}

/** The forms of the pack's name and version (specs/schema/policy-pack.schema.json), as a refusal says them. */
const PACK_IDENTITY: Readonly<Record<string, { form: string }>> = {
  '/metadata/name': { form: 'letters, digits, dots, dashes and underscores, starting with a letter or digit' },
  '/metadata/version': { form: 'letters, digits, dots, dashes and + (semver), starting with a letter or digit' },
};
const PACK_IDENTITY_WHY = "the pack's name and version are recorded with every plan as <name>@<version>, and shown in diagnostics, plans and the dashboard";

/**
 * What the keys of a built-in rule's setting name, by rule and instance
 * path: why their length is bounded (`why`), and why one that does not read
 * as what it is (a zero-width space, a direction control, a space at either
 * end: unseenRefusal) is refused (`unseen`), as the names they match are.
 */
const KEY_NAMES: Readonly<Record<string, { what: string; why: string; unseen: string; values?: string }>> = {
  'owner-quota /limits': {
    what: 'owner',
    why: "a fleet's owner is at most 64 characters (and not empty), so no fleet would be held to this limit",
    unseen: "a fleet's owner so written is refused (it is matched exactly, and would read in a plan or review as another), so no fleet would be held to this limit",
  },
  // Its values are label values, matched as exactly: `values` names them.
  'require-encrypted-disk /match': {
    what: 'label key',
    why: "a fleet's label key is 1 to 63 characters, so no fleet would match",
    unseen: "a fleet's label so written is refused (it is matched exactly, and would read in a plan or review as another), so the rule would match no fleet",
    values: 'label value',
  },
};

/**
 * One diagnostic, at the key, for each key of rule `rule`'s settings that
 * KEY_NAMES says names something and that does not read as what it is: an
 * owner-quota limit of "team-a" and a zero-width space loaded, read as
 * team-a's, and held no fleet (fleet files refuse such an owner).
 */
function unseenKeyDiagnostics(rule: string, config: Record<string, unknown>, where: (path: (string | number)[]) => Where): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const [at, named] of Object.entries(KEY_NAMES)) {
    if (!at.startsWith(`${rule} `)) continue;
    const path = pointerPath(at.slice(rule.length + 1));
    const mapping = valueIn(config, path);
    if (!mapping || typeof mapping !== 'object' || Array.isArray(mapping)) continue;
    const name = path.map((p) => clip(String(p))).join('.');
    for (const [key, value] of Object.entries(mapping)) {
      const refusal = unseenRefusal((shown) => `${named.what} ${shown} in ${name}`, key, named.unseen);
      if (refusal) out.push(diag('policy.rule-config', `Rule ${rule}: ${refusal}`, where([...path, key])));
      const values = named.values;
      if (values === undefined || typeof value !== 'string') continue;
      const ofValue = unseenRefusal((shown) => `${values} ${shown} of ${visible(key)} in ${name}`, value, named.unseen);
      if (ofValue) out.push(diag('policy.rule-config', `Rule ${rule}: ${ofValue}`, where([...path, key])));
    }
  }
  return out;
}

/** Why a lifecycle state's name must read as what it is (unseenRefusal). */
const STATE_MATTERS =
  "a state is matched exactly (the diagram's edges, a fleet's state, the record's VMs) and would read in a plan, the history or a review as another state";
/** Why an image catalog's names must read as what they are. */
const IMAGE_MATTERS = "a logical image is matched exactly (a fleet's spec.image) and would read in a plan or review as another image";
const REAL_IMAGE_MATTERS = 'the real image is given to the data center and shown in plans, and would read in a plan or review as another image';
/** Why a catalog's data center key must read as what it is: the stack's data center names are visible characters only. */
const CATALOG_DC_MATTERS =
  "it names a data center of the stack, whose names hold no such character, so the entry would apply to none while reading in a review as one's";
const INSTANCE_TYPE_MATTERS = 'the instance type is given to the cloud and shown in reviews, and would read as another type';

/**
 * The names a pack writes that are matched exactly and read in plans,
 * the record and reviews, when one holds a character that does not show, a
 * space at either end or a letter not composed (unseenRefusal): its
 * lifecycle's states (wherever the diagram writes one: states, initial,
 * terminal, requestable, failure, an edge's from and to), its image
 * catalog's logical images, data centers and real images, and the data
 * centers and type names of its instance-type and powerOff catalogs. A
 * state "Running" and a zero-width space loaded, was another state than
 * Running, and read as Running in every plan and review; an image key with a
 * right-to-left override showed as another image. Each is told at its node
 * (a mapping's key where the key is the name), `policy.schema`.
 */
function unseenPackNames(spec: PolicyPack['spec'], where: (path: (string | number)[]) => Where): Diagnostic[] {
  const out: Diagnostic[] = [];
  const check = (what: (shown: string) => string, s: string, matters: string, path: (string | number)[]): void => {
    const refusal = unseenRefusal(what, s, matters);
    if (refusal) out.push(diag('policy.schema', refusal, where(path)));
  };
  const lc = spec.lifecycle;
  const lcAt = (...p: (string | number)[]): (string | number)[] => ['spec', 'lifecycle', ...p];
  lc.states.forEach((s, i) => check((shown) => `lifecycle.states[${i}] ${shown}`, s, STATE_MATTERS, lcAt('states', i)));
  check((shown) => `lifecycle.initial ${shown}`, lc.initial, STATE_MATTERS, lcAt('initial'));
  for (const key of ['terminal', 'requestable', 'failure'] as const) {
    (lc[key] ?? []).forEach((s, i) => check((shown) => `lifecycle.${key}[${i}] ${shown}`, s, STATE_MATTERS, lcAt(key, i)));
  }
  lc.transitions.forEach((t, i) => {
    for (const end of ['from', 'to'] as const) check((shown) => `lifecycle.transitions[${i}].${end} ${shown}`, t[end], STATE_MATTERS, lcAt('transitions', i, end));
  });
  for (const [image, byDc] of Object.entries(spec.images)) {
    check((shown) => `Image ${shown} in images`, image, IMAGE_MATTERS, ['spec', 'images', image]);
    for (const [dc, real] of Object.entries(byDc)) {
      check((shown) => `Data center ${shown} in images.${clip(image)}`, dc, CATALOG_DC_MATTERS, ['spec', 'images', image, dc]);
      check((shown) => `images.${clip(image)}.${clip(dc)} ${shown}`, real, REAL_IMAGE_MATTERS, ['spec', 'images', image, dc]);
    }
  }
  for (const [dc, types] of Object.entries(spec.instanceTypes ?? {})) {
    check((shown) => `Data center ${shown} in instanceTypes`, dc, CATALOG_DC_MATTERS, ['spec', 'instanceTypes', dc]);
    types.forEach((t, i) => check((shown) => `instanceTypes.${clip(dc)}[${i}].name ${shown}`, t.name, INSTANCE_TYPE_MATTERS, ['spec', 'instanceTypes', dc, i, 'name']));
  }
  for (const dc of Object.keys(spec.powerOff ?? {})) check((shown) => `Data center ${shown} in powerOff`, dc, CATALOG_DC_MATTERS, ['spec', 'powerOff', dc]);
  return out;
}

/** Located diagnostics for ajv errors; an unknown key (or one its mapping's propertyNames refuse) is pointed at the key itself. */
export function schemaDiagnostics(
  errors: readonly ErrorObject[],
  where: (path: (string | number)[]) => Where,
  code: 'policy.schema' | 'policy.rule-config' | 'policy.test-case',
  prefix = '',
  /** The document validated: an enum's miss is looked up in it for a "did you mean". */
  root?: unknown,
  /** What the keys of the mapping at an instance path name, and why their length is bounded (KEY_NAMES). */
  keys: (instancePath: string) => { what: string; why: string } | undefined = () => undefined,
): Diagnostic[] {
  // A propertyNames failure comes as the key's own error (with `propertyName` set, at the mapping) and the mapping's
  // naming the key: only the second is told.
  return errors.filter((e) => e.propertyName === undefined).map((e) => {
    const path = pointerPath(e.instancePath);
    const name = path.length ? path.map((p) => clip(String(p))).join('.') : '(document)';
    if (e.keyword === 'propertyNames') {
      // Located at the key; its length is what is wrong (an empty one, a 200,000-character one).
      const key = String((e.params as { propertyName: string }).propertyName);
      const { minLength, maxLength } = (e.parentSchema?.propertyNames as { minLength?: number; maxLength?: number } | undefined) ?? {};
      const named = keys(e.instancePath);
      const what = `${named?.what ?? 'key'} ${quote(key)} in ${name}`;
      const length = [...key].length;
      const wrong =
        minLength !== undefined && length < minLength
          ? minLength === 1
            ? 'must not be empty'
            : `must be at least ${minLength} characters (it is ${length})`
          : maxLength !== undefined && length > maxLength
            ? `must be at most ${maxLength} characters (it is ${length})`
            : 'is not allowed';
      return diag(code, `${prefix}${what} ${wrong}${named ? `: ${named.why}` : ''}.`, where([...path, key]));
    }
    if (e.keyword === 'additionalProperties') {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      // The keys allowed there (ajv's verbose errors carry the schema object the key broke): a likely typo is named.
      const allowed = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
      return diag(code, `${prefix}Unknown key ${quote(key)} in ${name}${didYouMean(key, allowed)}.`, where([...path, key]));
    }
    const identity = code === 'policy.schema' ? PACK_IDENTITY[e.instancePath] : undefined;
    if (identity && (e.keyword === 'maxLength' || e.keyword === 'pattern')) {
      const value = e.data ?? valueIn(root, path);
      const text = typeof value === 'string' ? value : '';
      const what = e.keyword === 'maxLength' ? `must be at most ${String((e.params as { limit: number }).limit)} characters (it is ${[...text].length})` : `${quote(text)} must be ${identity.form}`;
      return diag(code, `${prefix}${name} ${what}: ${PACK_IDENTITY_WHY}.`, where(path));
    }
    if (e.keyword === 'enum') {
      const values = (e.params as { allowedValues: unknown[] }).allowedValues;
      return diag(code, `${prefix}${name} must be one of ${values.map(String).join(', ')}${didYouMean(e.data ?? valueIn(root, path), values)}.`, where(path));
    }
    return diag(code, `${prefix}${name} ${e.message ?? 'is invalid'}.`, where(path));
  });
}

/** How YAML spells a number that is not finite. */
const showNonFinite = (n: number): string => (Number.isNaN(n) ? '.nan' : n > 0 ? '.inf' : '-.inf');

/**
 * One located diagnostic per number in `v` that is not finite (YAML's .inf,
 * -.inf, .nan). JSON Schema has no such numbers, yet ajv lets Infinity pass
 * `type: integer` (a quota of `vms: .inf` limited nothing) and answers .nan
 * with one message per keyword; these are judged before the schema, once.
 * `skip` leaves a subtree to another check.
 */
export function nonFiniteDiagnostics(
  v: unknown,
  where: (path: (string | number)[]) => Where,
  code: 'policy.schema' | 'policy.rule-config',
  what: string,
  prefix = '',
  skip: (path: readonly (string | number)[]) => boolean = () => false,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const walk = (x: unknown, path: (string | number)[]): void => {
    if (skip(path)) return;
    if (typeof x === 'number' && !Number.isFinite(x)) {
      const name = path.length ? path.map((p) => clip(String(p))).join('.') : '(document)';
      out.push(diag(code, `${prefix}${name} is ${showNonFinite(x)}, not a number ${what} can hold: give a finite number.`, where(path)));
    } else if (Array.isArray(x)) x.forEach((e, i) => walk(e, [...path, i]));
    else if (x && typeof x === 'object') for (const [k, e] of Object.entries(x)) walk(e, [...path, k]);
  };
  walk(v, []);
  return out;
}

/** Settings of built-in rules that name a lifecycle state, checked against the pack's states. */
const STATE_SETTINGS: Readonly<Record<string, readonly string[]>> = { 'max-disruption': ['state'] };

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

function isRule(x: unknown): x is Rule {
  if (!x || typeof x !== 'object') return false;
  const r = x as Record<string, unknown>;
  return (
    typeof r.name === 'string' &&
    r.name.length > 0 &&
    typeof r.description === 'string' &&
    !!r.configSchema &&
    typeof r.configSchema === 'object' &&
    (r.defaultEnforcement === undefined || (ENFORCEMENTS as readonly unknown[]).includes(r.defaultEnforcement)) &&
    (r.checkChange === undefined || typeof r.checkChange === 'function') &&
    (r.checkPlan === undefined || typeof r.checkPlan === 'function') &&
    (r.checkRequest === undefined || typeof r.checkRequest === 'function') &&
    (typeof r.checkChange === 'function' || typeof r.checkPlan === 'function' || typeof r.checkRequest === 'function')
  );
}

/** A module of spec.modules, as a path: relative to the pack folder. */
function moduleFile(packDir: string, rel: string): string {
  return join(packDir, rel);
}

/** Whether `file` is `dir` or below it (both absolute, normalised). */
function isWithin(dir: string, file: string): boolean {
  const rel = relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Why module `rel` of the pack in `packDir` is not the pack's own code, if
 * it is not: an absolute path, a path whose `..` leave the folder, or a
 * link (the file or a folder on its way) whose target lies outside it.
 * A pack is reviewed, versioned and shipped as its folder: a module taken
 * from elsewhere ran code nobody reviewed with the pack, and, at an
 * authority, whatever sat at that path on its host.
 */
function moduleOutside(packDir: string, rel: string, file: string): string | undefined {
  if (isAbsolute(rel)) return `is an absolute path`;
  if (!isWithin(packDir, file)) return `leaves the pack folder (its .. go above ${packDir})`;
  let real: string;
  let realDir: string;
  try {
    real = realpathSync(file);
    realDir = realpathSync(packDir);
  } catch {
    // Missing or unreadable: the import reports it.
    return undefined;
  }
  return isWithin(realDir, real) ? undefined : `is a link to ${real}`;
}

async function loadModules(
  dir: string,
  modules: readonly string[],
  where: (path: (string | number)[]) => Where,
  diags: Diagnostic[],
  timeoutMs: number,
): Promise<{ rule: Rule; module: number }[]> {
  const rules: { rule: Rule; module: number }[] = [];
  for (const [i, rel] of modules.entries()) {
    const at = where(['spec', 'modules', i]);
    const file = moduleFile(dir, rel);
    const outside = moduleOutside(dir, rel, file);
    if (outside !== undefined) {
      diags.push(diag('policy.module-load', `Rule module ${rel} ${outside}, outside the pack folder ${dir}: a pack's modules are files inside its folder. Copy the module into the pack and list it by its path there.`, at));
      continue;
    }
    if (!existsSync(file)) {
      diags.push(diag('policy.module-load', `Rule module ${rel} does not exist (looked for ${file}).`, at));
      continue;
    }
    let mod: { default?: unknown };
    try {
      mod = (await importWithin(file, timeoutMs)) as { default?: unknown };
    } catch (err) {
      const why = err instanceof ModuleStuck ? err.message : `failed: ${describeThrown(err)}`;
      diags.push(diag('policy.module-load', `Importing ${rel} ${why}`, at));
      continue;
    }
    const exported = Array.isArray(mod.default) ? mod.default : [mod.default];
    // A getter of the export that throws is no rule (it threw out of loadPack).
    const bad = exported.findIndex((r) => {
      try {
        return !isRule(r);
      } catch {
        return true;
      }
    });
    if (exported.length === 0 || bad >= 0) {
      diags.push(
        diag(
          'policy.module-load',
          `The default export of ${rel} is not a rule (or array of rules) with name, description, configSchema and checkChange, checkPlan or checkRequest (and, if any, a defaultEnforcement of ${ENFORCEMENTS.join(', ')}).`,
          at,
        ),
      );
      continue;
    }
    // A rule's name is in every violation of a plan and matched exactly (settings, a duplicate): "protect" and a
    // zero-width space was another rule than protect, and read as protect in the pack and every plan.
    const unreadable = (exported as Rule[]).map((r) => unseenRefusal('Rule name', r.name, "it is matched exactly (the pack's and stack's settings, another rule's name) and named in every violation of a plan, where it would read as another rule")).filter((x) => x !== undefined);
    if (unreadable.length > 0) {
      for (const refusal of unreadable) diags.push(diag('policy.module-load', `The default export of ${rel}: ${refusal}`, at));
      continue;
    }
    rules.push(...(exported as Rule[]).map((rule) => ({ rule, module: i })));
  }
  return rules;
}

/**
 * Loads the pack in `dir` (the folder holding policy.yaml). Collects every
 * problem as a located diagnostic; `pack` is set only when none is an error.
 * `stackConfig` is the stack's `policyPack.config`: per rule, `enforcement`
 * and config keys that override the pack's `rules` settings key by key.
 * `opts.stackFile` lets config problems point at the stack file;
 * `opts.moduleTimeoutMs` (default MODULE_LOAD_TIMEOUT_MS) bounds the loading
 * of each rule module.
 */
export async function loadPack(
  dir: string,
  stackConfig: Record<string, Record<string, unknown>> = {},
  opts: { stackFile?: string; moduleTimeoutMs?: number } = {},
): Promise<{ pack?: LoadedPack; diagnostics: Diagnostic[] }> {
  const diags: Diagnostic[] = [];
  const packDir = resolve(dir);
  const file = join(packDir, PACK_FILE);

  let stackDoc: PositionedDoc | undefined | null = null;
  const stackWhere = (path: (string | number)[]): Where => {
    if (!opts.stackFile) return {};
    if (stackDoc === null) {
      try {
        stackDoc = parseYaml(readFileSync(opts.stackFile, 'utf8'), opts.stackFile);
      } catch {
        stackDoc = undefined;
      }
    }
    return stackDoc ? stackDoc.where(['spec', 'policyPack', ...path]) : { file: opts.stackFile };
  };

  const problem = packDirProblem(packDir);
  if (problem) {
    const what = {
      missing: `The pack folder ${clipPath(packDir)} does not exist.`,
      'no-pack-file': `The pack folder ${clipPath(packDir)} has no ${PACK_FILE}.`,
      'is-pack-file': `${packDir} is the pack's file; give the folder holding it: ${dirname(packDir)}.`,
      'is-file': `${clipPath(packDir)} is a file, not a pack folder holding ${PACK_FILE}.`,
      unreadable: `The pack folder ${clipPath(packDir)} or its ${PACK_FILE} cannot be read (no permission, or a link loop).`,
    }[problem];
    const isFile = problem === 'is-pack-file' || problem === 'is-file';
    diags.push(diag('policy.pack-missing', what, opts.stackFile ? stackWhere(['path']) : { file: isFile ? packDir : file }));
    return { diagnostics: diags };
  }

  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    diags.push(diag('policy.read-error', `The pack file cannot be read: ${fsReason(err)}.`, { file }));
    return { diagnostics: diags };
  }
  const decoded = decodeUtf8(bytes, file);
  if (!('text' in decoded)) {
    diags.push(diag('policy.yaml-syntax', decoded.problem, decoded.where));
    return { diagnostics: diags };
  }
  const y = parseYaml(decoded.text, file);
  if (y.errors.length) {
    for (const e of y.errors) diags.push(diag('policy.yaml-syntax', e.message, e.where));
    return { diagnostics: diags };
  }
  // specs/schema/policy-pack.schema.json, compiled by `npm run gen:types` (specs/gen-validators.ts).
  const validate = packValidator;
  // Rule settings are judged with the stack's over them, below.
  const nonFinite = nonFiniteDiagnostics(y.value, y.where, 'policy.schema', 'a policy pack', '', (p) => p.length === 2 && p[0] === 'spec' && p[1] === 'rules');
  if (nonFinite.length > 0) {
    diags.push(...nonFinite);
    return { diagnostics: diags };
  }
  if (!validate(y.value)) {
    diags.push(...schemaDiagnostics(validate.errors ?? [], y.where, 'policy.schema', '', y.value));
    return { diagnostics: diags };
  }
  const raw = y.value as PolicyPack;
  const spec = raw.spec;
  const lcWhere = (p: readonly (string | number)[]): Where => y.where(['spec', 'lifecycle', ...p]);
  const unseen = unseenPackNames(spec, y.where);
  diags.push(...unseen);
  // A state refused above is not also an unknown one where it is written (one diagnostic per node).
  const refusedAt = new Set(unseen.map((d) => `${d.line}:${d.col}`));
  const lcDiags = checkLifecycle(spec.lifecycle, lcWhere).filter((d) => d.code !== 'policy.unknown-state' || !refusedAt.has(`${d.line}:${d.col}`));
  diags.push(...lcDiags);
  // A diagram with an unknown operation is not built (its edges are Operations); the rest of the pack is still checked.
  const lifecycle = lcDiags.some((d) => d.code === 'policy.unknown-operation') ? undefined : buildLifecycle(spec.lifecycle, lcWhere);

  // Rules: built-ins, then each module's, in the pack's order.
  const before = diags.length;
  const custom = await loadModules(packDir, spec.modules ?? [], y.where, diags, opts.moduleTimeoutMs ?? MODULE_LOAD_TIMEOUT_MS);
  const registry = new Map<string, Rule>();
  const moduleOf = new Map<string, number>();
  for (const r of BUILTIN_RULES) registry.set(r.name, r);
  for (const { rule: r, module } of custom) {
    if (registry.has(r.name)) {
      const at = y.where(['spec', 'modules', module]);
      diags.push(diag('policy.duplicate-rule', `Rule ${r.name} from ${spec.modules![module]} has the same name as another rule.`, at));
      continue;
    }
    registry.set(r.name, r);
    moduleOf.set(r.name, module);
  }

  // A module that did not load may have defined any rule: settings naming
  // none of the known ones are then not reported (policy.unknown-rule sent
  // people looking for a typo in the name while the module was the cause).
  const modulesFailed = diags.slice(before).some((d) => d.code === 'policy.module-load');
  const packRules = (spec.rules ?? {}) as unknown as Record<string, Record<string, unknown>>;
  for (const name of Object.keys(packRules)) {
    if (!registry.has(name) && !modulesFailed) {
      diags.push(diag('policy.unknown-rule', `Pack settings name rule ${quote(name)}; known rules: ${[...registry.keys()].join(', ')}.`, y.where(['spec', 'rules', name])));
    }
  }
  for (const name of Object.keys(stackConfig)) {
    if (!registry.has(name) && !modulesFailed) {
      diags.push(
        diag(
          'policy.unknown-rule',
          `Stack config names rule ${quote(name)}; pack ${raw.metadata.name} knows ${[...registry.keys()].join(', ')}.`,
          opts.stackFile ? stackWhere(['config', name]) : { file },
        ),
      );
    }
  }

  const ajv: { instance?: Ajv } = {};
  const rules = new Map<string, ResolvedRule>();
  for (const [name, rule] of registry) {
    const fromPack = packRules[name] ?? {};
    const fromStack = stackConfig[name] ?? {};
    const origin = (key: string | number | undefined): Where => {
      if (key !== undefined && Object.hasOwn(fromStack, key) && opts.stackFile) return stackWhere(['config', name, key]);
      if (key !== undefined && Object.hasOwn(fromPack, key)) return y.where(['spec', 'rules', name, key]);
      if (Object.hasOwn(stackConfig, name) && opts.stackFile) return stackWhere(['config', name]);
      return y.where(['spec', 'rules', name]);
    };
    const merged: Record<string, unknown> = { ...fromPack, ...fromStack };
    const { enforcement: rawEnforcement, ...rawConfig } = merged;
    const enforcement = (rawEnforcement ?? rule.defaultEnforcement ?? 'mandatory') as Enforcement;
    if (!ENFORCEMENTS.includes(enforcement)) {
      diags.push(diag('policy.rule-config', `Rule ${name}: enforcement must be one of ${ENFORCEMENTS.join(', ')}, not ${quote(String(rawEnforcement))}${didYouMean(rawEnforcement, ENFORCEMENTS)}.`, origin('enforcement')));
      continue;
    }
    const config = structuredClone(rawConfig);
    let check: ValidateFunction;
    try {
      check = await ruleConfigValidator(rule, ajv);
      // An $async schema's validator answers a Promise, which the check below took for "valid": any setting passed.
      if ((check as { $async?: unknown }).$async === true) throw new Error('an $async schema is not supported: settings are checked when the pack loads, synchronously');
    } catch (err) {
      diags.push(diag('policy.module-load', `Rule ${name} has an invalid configSchema: ${describeThrown(err)}`, y.where(['spec', 'modules', moduleOf.get(name) ?? 0])));
      continue;
    }
    const whereKey = (path: (string | number)[]): Where => {
      const w = origin(path[0]);
      if (path.length <= 1) return w;
      if (w.file === opts.stackFile && Object.hasOwn(fromStack, path[0])) return stackWhere(['config', name, ...path]);
      return Object.hasOwn(fromPack, path[0]) ? y.where(['spec', 'rules', name, ...path]) : w;
    };
    const nonFiniteSettings = nonFiniteDiagnostics(config, whereKey, 'policy.rule-config', 'a setting', `Rule ${name}: `);
    if (nonFiniteSettings.length > 0) {
      diags.push(...nonFiniteSettings);
      continue;
    }
    // Reported with the schema's findings: a key may be too long and hold a zero-width space.
    const unseenKeys = unseenKeyDiagnostics(name, config, whereKey);
    diags.push(...unseenKeys);
    if (!check(config)) {
      diags.push(...schemaDiagnostics(check.errors ?? [], whereKey, 'policy.rule-config', `Rule ${name}: `, config, (p) => KEY_NAMES[`${name} ${p}`]));
      continue;
    }
    if (unseenKeys.length > 0) continue;
    // Settings that name a lifecycle state must name one of the pack's (a default is
    // let be: a pack without Running): max-disruption with state: Runing validated,
    // never fired (no member is ever in Runing), and let rollouts take every member down at once.
    const badState = (STATE_SETTINGS[name] ?? []).find((key) => typeof rawConfig[key] === 'string' && !spec.lifecycle.states.includes(rawConfig[key] as string));
    if (badState !== undefined) {
      diags.push(
        diag(
          'policy.rule-config',
          `Rule ${name}: ${badState} ${typeof config[badState] === 'string' ? quote(config[badState]) : String(config[badState])} is not a state of pack ${raw.metadata.name}'s lifecycle (${spec.lifecycle.states.join(', ')})${didYouMean(config[badState], spec.lifecycle.states)}.`,
          origin(badState),
        ),
      );
      continue;
    }
    const module = moduleOf.get(name);
    // where: found when asked (nothing does for a valid stack): for a rule the stack sets, it means parsing stack.yaml again.
    let where: { at?: Where } = {};
    const resolved: ResolvedRule = {
      rule,
      enforcement,
      config: deepFreeze(config),
      get where() {
        if (!where.at) where = { at: origin(undefined) };
        return where.at;
      },
      ...(module !== undefined ? { module: moduleFile(packDir, spec.modules![module]) } : {}),
    };
    rules.set(name, Object.freeze(resolved));
  }

  diags.push(...checkInstanceTypes(spec.instanceTypes, y.where));
  if (hasErrors(diags) || !lifecycle) return { diagnostics: diags };
  const pack: LoadedPack = {
    name: raw.metadata.name,
    version: raw.metadata.version,
    dir: packDir,
    file,
    lifecycle,
    images: deepFreeze(structuredClone(spec.images)),
    ...(spec.instanceTypes ? { instanceTypes: deepFreeze(structuredClone(spec.instanceTypes)) } : {}),
    ...(spec.powerOff ? { powerOff: deepFreeze(structuredClone(spec.powerOff)) } : {}),
    rules,
    modules: Object.freeze((spec.modules ?? []).map((rel) => moduleFile(packDir, rel))),
    ...(spec.ruleTimeoutSeconds !== undefined ? { ruleTimeoutSeconds: spec.ruleTimeoutSeconds } : {}),
  };
  return { pack: Object.freeze(pack), diagnostics: diags };
}

/** The instance-type catalog beyond its schema: a type named twice in a data center's list is a mistake (the first would always win). */
function checkInstanceTypes(catalog: PolicyPack['spec']['instanceTypes'], where: (path: (string | number)[]) => Where): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const [dc, types] of Object.entries(catalog ?? {})) {
    const seen = new Map<string, number>();
    types.forEach((t, i) => {
      const first = seen.get(t.name);
      if (first !== undefined) {
        out.push(diag('policy.instance-type', `Data center ${clip(dc)} lists instance type ${clip(t.name)} twice (entries ${first} and ${i}); keep one.`, where(['spec', 'instanceTypes', dc, i, 'name'])));
      } else seen.set(t.name, i);
    });
  }
  return out;
}
