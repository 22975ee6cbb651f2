// JSON Schema validation of stack and fleet documents, with every ajv error
// turned into a diagnostic at the node it concerns.
import type { ErrorObject, ValidateFunction } from 'ajv';
import { DmzClient, Fleet, Stack } from '../../specs/validators/documents.js';
import { clip, diag, quote, type Diagnostic } from '../diags/index.ts';
import { didYouMean, suggest } from '../diags/suggest.ts';
import { redactUrl } from '../transport/tokens.ts';
import { keyWhere, numberSource, ownerWhere, valueWhere, type Path, type SourceDoc } from './yaml.ts';

export type DocKind = 'Fleet' | 'Stack' | 'DmzClient';

export const API_VERSION = 'fleet/v1';

// Compiled from specs/schema/{fleet,stack,dmz-client}.schema.json by `npm run gen:types`
// (specs/gen-validators.ts; allErrors, and verbose: errors carry parentSchema,
// to list the allowed keys, and the offending data).
const validators: Record<DocKind, ValidateFunction> = { Fleet, Stack, DmzClient };

/** `/spec/placement/dataCenters/1` -> `['spec', 'placement', 'dataCenters', '1']` (JSON Pointer unescaped). */
export function pointerToPath(pointer: string): string[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** A readable name for a path: `spec.dataCenters[1] ("richmond")`, or `the document` for the root. */
export function describePath(root: unknown, path: Path): string {
  if (path.length === 0) return 'the document';
  let s = '';
  let node: unknown = root;
  for (const seg of path) {
    const isIndex = Array.isArray(node);
    s += isIndex ? `[${seg}]` : s ? `.${clip(String(seg))}` : clip(String(seg));
    node = node === null || typeof node !== 'object' ? undefined : (node as Record<string, unknown>)[String(seg)];
  }
  const name = node !== null && typeof node === 'object' ? (node as { name?: unknown }).name : undefined;
  if (typeof name === 'string' && Array.isArray(valueAt(root, path.slice(0, -1)))) s += ` (${quote(name)})`;
  return s;
}

function valueAt(root: unknown, path: Path): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[String(seg)];
  }
  return node;
}

/** How a value is named in a detail sentence. */
export function showValue(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return quote(v);
  return String(v);
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'a string',
  object: 'a mapping',
  array: 'a list',
  boolean: 'true or false',
  null: 'empty',
};

function typeNames(t: unknown): string {
  const list = Array.isArray(t) ? t : String(t).split(',');
  return list.map((x) => TYPE_NAMES[x] ?? x).join(' or ');
}

/**
 * A `oneOf` (placement.near: a name or coordinates) fails with one error per
 * branch plus its own. When the value's type picked a branch (errors inside
 * it, or non-type errors at it), only that branch's errors are kept;
 * otherwise the type errors collapse into one "must be X or Y".
 */
function simplifyOneOf(errors: ErrorObject[]): ErrorObject[] {
  let out = errors;
  for (const one of errors.filter((e) => e.keyword === 'oneOf')) {
    const p = one.instancePath;
    const typeAtP = out.filter((e) => e.instancePath === p && e.keyword === 'type');
    const branchTaken = out.some(
      (e) => e !== one && (e.instancePath.startsWith(`${p}/`) || (e.instancePath === p && e.keyword !== 'type')),
    );
    out = out.filter((e) => e !== one && !typeAtP.includes(e));
    if (!branchTaken) {
      out.push({ ...one, keyword: 'type', params: { type: typeAtP.map((e) => String(e.params.type)) } });
    }
  }
  return out;
}

/**
 * Why a name's length is limited, by document kind and instance path (list
 * indexes as `*`): where the name ends up and what limits it there. If you
 * give another string a maxLength in specs/schema/, say why here.
 * test/name-limits.test.ts checks that the schemas' limits keep every name
 * they accept within the limits named here.
 */
const LENGTH_WHY: Readonly<Record<string, string>> = {
  'Stack /metadata/name':
    "the stack's name is in every VM's name (`<stack>-<fleet>-<index>`), which the drivers write in an EC2 or Azure tag (at most 256 characters), and three times in the session policy of an AWS data center (STS allows 2048 characters)",
  'Stack /spec/site/name': "a site is named like a data center (placement.near names either), and a data center's name is at most 40 characters",
  'Stack /spec/dataCenters/*/name':
    "a data center's name is a folder and file name (the simulated data center's state, a DMZ client's state folder; at most 255 bytes) and a tag on every VM it makes",
  'Stack /spec/dataCenters/*/aws/region': "the region is in the data center's session policy many times, which STS limits to 2048 characters (the longest AWS region is 15 characters)",
  'DmzClient /spec/aws/region': 'AWS regions are at most 15 characters, and the stack file allows no longer one',
  'DmzClient /metadata/dataCenter': "it names a data center of the stack, and a data center's name is at most 40 characters",
  'Fleet /metadata/owner':
    "the owner is matched exactly against quota limits and entitlements, kept with every VM in the record, sent with every create and named in plans, reviews and diagnostics; 64 characters hold any team's name",
  'Fleet /metadata/labels (key)': "a label's key is at most 63 characters and its value at most 256, as in Kubernetes: labels are matched by policy rules and shown in plans and reviews",
  'Fleet /metadata/labels/*': "a label's key is at most 63 characters and its value at most 256, as in Kubernetes: labels are matched by policy rules and shown in plans and reviews",
  'Fleet /metadata/labels (empty key)': 'policy rules match labels by their key, and an empty one shows as nothing in plans and reviews',
  'Fleet /metadata/labels (count)': "every label is matched by the policy rules at each plan and shown in plans and reviews; 64 hold any fleet's",
};

/** 65 -> `65th`. */
function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}

/** The LENGTH_WHY key of a maxLength error at `instancePath` of a `kind` document: list indexes and label keys as `*`. */
function lengthKey(kind: DocKind, instancePath: string): string {
  const path = instancePath.replace(/\/\d+(?=\/|$)/g, '/*');
  return `${kind} ${kind === 'Fleet' && path.startsWith('/metadata/labels/') ? '/metadata/labels/*' : path}`;
}

/** The instance paths of a fleet's rollout amounts (specs/schema/fleet.schema.json, definitions.amount). */
const ROLLOUT_AMOUNT = /^\/spec\/rollout\/(maxUnavailable|maxSurge|failureThreshold)$/;

/** The largest count a rollout amount may be: definitions.amount's maximum (schema.test.ts checks they agree). */
export const ROLLOUT_AMOUNT_MAX = 100_000;

function toDiagnostic(src: SourceDoc, kind: DocKind, e: ErrorObject): Diagnostic {
  const path = pointerToPath(e.instancePath);
  const name = describePath(src.value, path);
  const data = valueAt(src.value, path);
  // A number as written (99999999999999999999, not the double it became: 100000000000000000000).
  const written = typeof data === 'number' ? numberSource(src, path) : undefined;
  // Clipped as a quoted value is: the file may write a number of 100,000 digits.
  const shown = written !== undefined ? clip(written) : showValue(data);
  const at = valueWhere(src, path);
  const p = e.params as Record<string, unknown>;
  // A rollout amount is a count or a percentage: one sentence says so, whichever branch of its oneOf failed
  // (the pattern's regex or "a whole number or a string" told neither).
  if (kind === 'Fleet' && ROLLOUT_AMOUNT.test(e.instancePath) && e.keyword !== 'additionalProperties') {
    // The range is said whole: "(0 or more)" told a count of 100001 nothing about why it was refused.
    const code = e.keyword === 'type' ? 'spec.wrong-type' : e.keyword === 'minimum' || e.keyword === 'maximum' ? 'spec.out-of-range' : 'spec.invalid-value';
    return diag(code, `${capital(name)} must be a whole number of members (0 to ${ROLLOUT_AMOUNT_MAX}) or a percentage such as "25%" (0% to 100%), not ${shown}.`, at);
  }
  switch (e.keyword) {
    case 'propertyNames': {
      // A key refused by the mapping's propertyNames (ajv gives its own error, dropped in validateDoc, and this one
      // naming the key): located at the key. The only ones are a label key's length, empty or too long (fleet.schema.json).
      const key = String(p.propertyName);
      const { minLength, maxLength } = (e.parentSchema?.propertyNames as { minLength?: number; maxLength?: number } | undefined) ?? {};
      const what = kind === 'Fleet' && e.instancePath === '/metadata/labels' ? 'Label key' : `A key of ${name}`;
      const at = keyWhere(src, [...path, key]);
      const length = [...key].length;
      if (minLength !== undefined && length < minLength) {
        const why = LENGTH_WHY[`${kind} ${e.instancePath} (empty key)`];
        return diag('spec.out-of-range', `${what} ${quote(key)} must not be empty${why ? `: ${why}` : ''}.`, at);
      }
      if (maxLength !== undefined && length > maxLength) {
        const why = LENGTH_WHY[`${kind} ${e.instancePath} (key)`];
        return diag('spec.out-of-range', `${what} ${quote(key)} must be at most ${maxLength} characters (it is ${length})${why ? `: ${why}` : ''}.`, at);
      }
      return diag('spec.invalid-value', `${what} ${quote(key)} is not allowed.`, at);
    }
    case 'maxProperties': {
      // Told at the first key past the limit (the mapping may hold thousands): the one to remove from.
      const keys = data !== null && typeof data === 'object' ? Object.keys(data) : [];
      const limit = Number(p.limit);
      const why = LENGTH_WHY[`${kind} ${e.instancePath} (count)`];
      const noun = kind === 'Fleet' && e.instancePath === '/metadata/labels' ? 'labels' : 'keys';
      return diag(
        'spec.out-of-range',
        `${capital(name)} must have at most ${limit} ${noun} (it has ${keys.length}); the ${ordinal(limit + 1)} is ${quote(keys[limit] ?? '')}${why ? `: ${why}` : ''}.`,
        keys.length > limit ? keyWhere(src, [...path, keys[limit]]) : at,
      );
    }
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const allowed = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
      const hint = suggest(key, allowed);
      const where = keyWhere(src, [...path, key]);
      const list = allowed.length ? `; allowed keys: ${allowed.join(', ')}` : '';
      return diag(
        'spec.unknown-key',
        `Key ${quote(key)} is not allowed in ${name}${hint ? ` (did you mean ${quote(hint)}?)` : list}.`,
        where,
      );
    }
    case 'required': {
      const key = String(p.missingProperty);
      const where = ownerWhere(src, path);
      return diag('spec.missing-field', `${capital(name)} has no ${quote(key)}, which is required.`, where);
    }
    case 'type':
      return diag('spec.wrong-type', `${capital(name)} must be ${typeNames(p.type)}, not ${shown}.`, at);
    case 'minimum':
    case 'exclusiveMinimum':
      return diag('spec.out-of-range', `${capital(name)} must be ${e.keyword === 'minimum' ? 'at least' : 'greater than'} ${String(p.limit)}, not ${shown}.`, at);
    case 'maximum':
    case 'exclusiveMaximum':
      return diag('spec.out-of-range', `${capital(name)} must be ${e.keyword === 'maximum' ? 'at most' : 'less than'} ${String(p.limit)}, not ${shown}.`, at);
    case 'minLength':
      return diag('spec.out-of-range', `${capital(name)} must not be empty.`, at);
    case 'maxLength': {
      const why = LENGTH_WHY[lengthKey(kind, e.instancePath)];
      // The value is not quoted: it is too long (a 200,000-character name), its length is what matters.
      const length = typeof data === 'string' ? [...data].length : undefined;
      return diag(
        'spec.out-of-range',
        `${capital(name)} must be at most ${String(p.limit)} characters${length === undefined ? '' : ` (it is ${length})`}${why ? `: ${why}` : ''}.`,
        at,
      );
    }
    case 'minItems':
      return diag('spec.out-of-range', `${capital(name)} must list at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}.`, at);
    case 'uniqueItems': {
      const j = Math.max(Number(p.i), Number(p.j));
      const item = Array.isArray(data) ? data[j] : undefined;
      return diag('spec.invalid-value', `${capital(name)} lists ${showValue(item)} more than once.`, valueWhere(src, [...path, j]));
    }
    case 'enum':
      return diag(
        'spec.invalid-value',
        `${capital(name)} must be one of ${(p.allowedValues as unknown[]).map(String).join(', ')}, not ${shown}${didYouMean(data, p.allowedValues as unknown[])}.`,
        at,
      );
    case 'const':
      return diag('spec.invalid-value', `${capital(name)} must be ${showValue(p.allowedValue)}, not ${shown}.`, at);
    case 'pattern':
      if (kind === 'Fleet' && e.instancePath === '/metadata/name') {
        return diag(
          'spec.invalid-fleet-name',
          `Fleet name ${shown} must be lower-case letters, digits and dashes, start with a letter and be at most 40 characters.`,
          at,
        );
      }
      if (kind === 'Stack' && e.instancePath === '/spec/record') {
        return diag('spec.record-url', `Record URL ${showValue(typeof data === 'string' ? redactUrl(data) : data)} must start with pglite://, postgres:// or postgresql://.`, at);
      }
      if (kind === 'DmzClient' && e.instancePath === '/spec/bootUrl') {
        return diag(
          'spec.invalid-value',
          `${capital(name)} ${shown} must be an http:// or https:// URL with no query (?), fragment (#) or trailing slash, and no white space: the VMs post their reports to <bootUrl>/status.`,
          at,
        );
      }
      return diag('spec.invalid-value', `${capital(name)} ${shown} does not have the required form (${String(p.pattern)}).`, at);
    default:
      return diag('spec.invalid-value', `${capital(name)} ${e.message ?? 'is invalid'}.`, at);
  }
}

/** Sentences start with the path as written (`spec.count must be…`); only "the document" is capitalised. */
function capital(s: string): string {
  return s === 'the document' ? 'The document' : s;
}

/**
 * Checks a document's apiVersion and kind, then its shape against the kind's
 * schema. Returns no diagnostics when the document is valid. A document with
 * a wrong apiVersion or kind gets only that diagnostic: the rest would be
 * noise from checking it against the wrong format.
 */
export function validateDoc(src: SourceDoc, kind: DocKind): Diagnostic[] {
  const v = src.value;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ('apiVersion' in o && o.apiVersion !== API_VERSION) {
      return [
        diag('spec.api-version', `apiVersion is ${showValue(o.apiVersion)}; this version of dmzfleet reads ${API_VERSION}.`, valueWhere(src, ['apiVersion'])),
      ];
    }
    if ('kind' in o && o.kind !== kind) {
      const why =
        kind === 'Stack' ? 'a stack file holds one Stack document' : kind === 'DmzClient' ? 'a DMZ client config file holds one DmzClient document' : "files matched by the stack's specs globs hold Fleet documents";
      return [diag('spec.kind', `kind is ${showValue(o.kind)}, expected ${kind}: ${why}.`, valueWhere(src, ['kind']))];
    }
  }
  const validate = validators[kind];
  if (validate(v)) return [];
  // A propertyNames failure comes as the key's own error (with `propertyName` set, at the mapping) and the mapping's
  // naming the key: only the second is told.
  const errors = (validate.errors ?? []).filter((e) => e.propertyName === undefined);
  return simplifyOneOf(errors).map((e) => toDiagnostic(src, kind, e));
}
