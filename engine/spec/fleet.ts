// Checks of fleet documents beyond their shape (names unique, placement and
// hardware the stack can satisfy, state and image the pack knows), and the
// defaulted LoadedFleet built from a valid document.
import { fitInstanceType, instanceTypesOf } from '../policy/instance-types.ts';
import { createHash } from 'node:crypto';
import type { Fleet } from '../../specs/types/fleet.ts';
import { diag, didYouMean, location, type Diagnostic, type Where } from '../diags/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { isZeroAmount, type RolloutAmount, type RolloutSpec } from '../model/index.ts';
import type { LoadedFleet, Location } from './types.ts';
import { showValue } from './schema.ts';
import { unseenRefusal, visible } from '../diags/index.ts';
import { collectPointers, docWhere, keyWhere, valueWhere, type SourceDoc } from './yaml.ts';

/** What a fleet without `state` asks for (DESIGN.md). */
export const DEFAULT_STATE = 'Running';

/** What fleet checks need to know of the stack; absent when the stack itself is invalid. */
export interface StackContext {
  siteName: string;
  /** Data center name -> its hardware traits. */
  dataCenters: ReadonlyMap<string, readonly string[]>;
  /** Data center name -> its driver, for the cloud ones (`aws`, `azure`): their instance-type catalog is checked. */
  cloudDrivers?: ReadonlyMap<string, string>;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/**
 * Semantic checks of one fleet document. They read the raw value defensively
 * (a field of the wrong type is skipped, the schema already reported it), so
 * one run reports a typo in one key and an unknown image in another.
 */
export function checkFleet(src: SourceDoc, stack: StackContext | undefined, pack: LoadedPack | undefined): Diagnostic[] {
  const out: Diagnostic[] = [];
  const doc = isObj(src.value) ? src.value : {};
  const spec = isObj(doc.spec) ? doc.spec : {};
  const placement = isObj(spec.placement) ? spec.placement : {};

  out.push(...checkUnseen(src, doc));

  if (isInt(spec.count) && isInt(spec.minCount) && spec.minCount > spec.count) {
    out.push(
      diag('spec.min-count-above-count', `minCount ${spec.minCount} is greater than count ${spec.count}.`, valueWhere(src, ['spec', 'minCount'])),
    );
  }

  out.push(...checkRollout(src, spec));

  // Data centers this fleet may use: its allow-list (known names only), else all of the stack's.
  let candidates: string[] = [];
  if (stack) {
    const known = [...stack.dataCenters.keys()];
    candidates = known;
    if (Array.isArray(placement.dataCenters)) {
      candidates = [];
      placement.dataCenters.forEach((name, i) => {
        if (typeof name !== 'string') return;
        if (stack.dataCenters.has(name)) candidates.push(name);
        else {
          out.push(
            diag(
              'spec.unknown-data-center',
              `placement.dataCenters names ${showValue(name)}, which is not a data center of the stack; it has ${known.join(', ')}.`,
              valueWhere(src, ['spec', 'placement', 'dataCenters', i]),
            ),
          );
        }
      });
    }
    if (typeof placement.near === 'string' && placement.near !== stack.siteName && !stack.dataCenters.has(placement.near)) {
      out.push(
        diag(
          'spec.unknown-near',
          `placement.near is ${showValue(placement.near)}, which is neither the stack's site (${stack.siteName}) nor one of its data centers (${known.join(', ')}).`,
          valueWhere(src, ['spec', 'placement', 'near']),
        ),
      );
    }

    // An empty allow-list is already a schema error; checking against no candidates would only add noise.
    if (Array.isArray(spec.hardware) && candidates.length) {
      const traits = spec.hardware.filter((t): t is string => typeof t === 'string');
      let missing = false;
      spec.hardware.forEach((t, i) => {
        if (typeof t !== 'string') return;
        if (!candidates.some((dc) => stack.dataCenters.get(dc)?.includes(t))) {
          missing = true;
          const scope = Array.isArray(placement.dataCenters) ? `none of the data centers it may use (${candidates.join(', ')})` : 'no data center of the stack';
          out.push(diag('spec.hardware-unavailable', `Hardware trait ${showValue(t)} is offered by ${scope}.`, valueWhere(src, ['spec', 'hardware', i])));
        }
      });
      if (!missing && traits.length > 1 && !candidates.some((dc) => traits.every((t) => stack.dataCenters.get(dc)?.includes(t)))) {
        out.push(
          diag(
            'spec.hardware-unavailable',
            `No single data center among ${candidates.join(', ')} offers all of ${traits.join(', ')}.`,
            valueWhere(src, ['spec', 'hardware']),
          ),
        );
      }
    }
  }

  if (pack) {
    const state = spec.state;
    if (typeof state === 'string' && state && !pack.lifecycle.requestable.includes(state)) {
      const known = pack.lifecycle.states.includes(state) ? 'is a state of' : 'is not a state of';
      // A typo (Runing, running) is named with the requestable state it is closest to; a real state that may not be asked for is not.
      const hint = pack.lifecycle.states.includes(state) ? '' : didYouMean(state, pack.lifecycle.requestable);
      out.push(
        diag(
          'spec.state-not-requestable',
          `state ${showValue(state)} ${known} pack ${pack.name}'s lifecycle${hint}, and a spec may ask only for ${pack.lifecycle.requestable.join(' or ')}.`,
          valueWhere(src, ['spec', 'state']),
        ),
      );
    }
    if (state === undefined && isObj(doc.spec) && !pack.lifecycle.requestable.includes(DEFAULT_STATE)) {
      out.push(
        diag(
          'spec.state-not-requestable',
          `state is not set, so it defaults to ${DEFAULT_STATE}, which pack ${pack.name} does not let a spec ask for; set state to ${pack.lifecycle.requestable.join(' or ')}.`,
          keyWhere(src, ['spec']),
        ),
      );
    }
    // A cloud data center runs a size as one of its catalog's instance types (a missing catalog entry is the stack's diagnostic).
    const size = isObj(spec.size) ? spec.size : undefined;
    if (stack?.cloudDrivers && size && typeof size.cpu === 'number' && typeof size.memoryGiB === 'number') {
      for (const dc of candidates) {
        const types = stack.cloudDrivers.has(dc) ? instanceTypesOf(pack, dc) : undefined;
        if (types && !fitInstanceType(types, { cpu: size.cpu, memoryGiB: size.memoryGiB })) {
          out.push(
            diag(
              'spec.size-not-offered',
              `Size ${size.cpu} CPU / ${size.memoryGiB} GiB fits no instance type of ${dc} in pack ${pack.name}'s catalog (largest: ${types.map((t) => `${t.name} ${t.cpu}/${t.memoryGiB}`).at(-1)}); pick a smaller size or leave ${dc} out of placement.dataCenters.`,
              valueWhere(src, ['spec', 'size']),
            ),
          );
        }
      }
    }
    const image = spec.image;
    if (typeof image === 'string' && image) {
      const entry = Object.hasOwn(pack.images, image) ? pack.images[image] : undefined;
      if (!entry) {
        out.push(
          diag(
            'spec.unknown-image',
            `Image ${showValue(image)} is not in pack ${pack.name}'s catalog; it knows ${Object.keys(pack.images).join(', ') || 'no images'}.`,
            valueWhere(src, ['spec', 'image']),
          ),
        );
      } else if (stack && candidates.length && !candidates.some((dc) => Object.hasOwn(entry, dc))) {
        out.push(
          diag(
            'spec.image-not-offered',
            `Image ${showValue(image)} has no translation for ${candidates.join(', ')} in pack ${pack.name}'s catalog; it is offered in ${Object.keys(entry).join(', ') || 'no data center'}.`,
            valueWhere(src, ['spec', 'image']),
          ),
        );
      }
    }
  }
  return out;
}


/**
 * The owner and the labels are matched exactly (owner-quota limits, a
 * rule's label match) and read in a review. An owner "team-a" followed by a
 * zero-width space read as team-a in the plan and the pull request, and no
 * quota limit of team-a applied to it; a label value "pr<U+202E>od" read as
 * prod and matched no rule of env: prod.
 */
function checkUnseen(src: SourceDoc, doc: Record<string, unknown>): Diagnostic[] {
  const out: Diagnostic[] = [];
  const meta = isObj(doc.metadata) ? doc.metadata : {};
  // `what` and `where` only when there is something to say: every fleet document of a plan passes here.
  const report = (what: () => string, s: string, where: () => Where): void => {
    const refusal = unseenRefusal((shown) => `${what()} ${shown}`, s);
    if (refusal) out.push(diag('spec.invalid-value', refusal, where()));
  };
  if (typeof meta.owner === 'string') report(() => 'metadata.owner', meta.owner, () => valueWhere(src, ['metadata', 'owner']));
  if (isObj(meta.labels)) {
    for (const [k, v] of Object.entries(meta.labels)) {
      report(() => 'Label key', k, () => keyWhere(src, ['metadata', 'labels', k]));
      if (typeof v === 'string') report(() => `The value of label ${visible(k)}`, v, () => valueWhere(src, ['metadata', 'labels', k]));
    }
  }
  return out;
}

const isAmount = (v: unknown): v is RolloutAmount => isInt(v) || (typeof v === 'string' && /^(100|[1-9]?[0-9])%$/.test(v));

/**
 * spec.rollout settings that no rollout could work with (their shape is the
 * schema's): maxUnavailable and maxSurge both zero would never let a member
 * change, and a failure threshold of zero would stop before the first wave.
 */
function checkRollout(src: SourceDoc, spec: Record<string, unknown>): Diagnostic[] {
  const r = isObj(spec.rollout) ? spec.rollout : undefined;
  if (!r) return [];
  const out: Diagnostic[] = [];
  const mu = isAmount(r.maxUnavailable) ? r.maxUnavailable : undefined;
  const ms = isAmount(r.maxSurge) ? r.maxSurge : undefined;
  if (isZeroAmount(mu) && isZeroAmount(ms)) {
    // `0` and `"0%"` are told as written: "both 0" named maxSurge "0%" as 0.
    const both = showValue(mu) === showValue(ms) ? `are both ${showValue(mu)}` : `are ${showValue(mu)} and ${showValue(ms)}`;
    out.push(
      diag(
        'spec.rollout-invalid',
        `rollout.maxUnavailable and rollout.maxSurge ${both}: no member could ever be taken out of Running or replaced by a surge VM, so a rollout would never start; allow one of them at least 1.`,
        valueWhere(src, ['spec', 'rollout', 'maxSurge']),
      ),
    );
  } else if (isZeroAmount(mu) && r.maxSurge === undefined) {
    // Only when maxSurge is absent: one that is set but invalid (`maxSurge: ~`) is told by the schema, not as unset.
    out.push(
      diag(
        'spec.rollout-invalid',
        'rollout.maxUnavailable is 0 and maxSurge is not set (it defaults to 0): a rollout would never start; set maxSurge (replacements are then created before the old VMs go) or allow maxUnavailable at least 1.',
        valueWhere(src, ['spec', 'rollout', 'maxUnavailable']),
      ),
    );
  }
  const ft = isAmount(r.failureThreshold) ? r.failureThreshold : undefined;
  if (isZeroAmount(ft)) {
    out.push(
      diag(
        'spec.rollout-invalid',
        `rollout.failureThreshold is ${showValue(ft)}: the rollout would stop before its first member; use at least 1 (stop at the first failed member).`,
        valueWhere(src, ['spec', 'rollout', 'failureThreshold']),
      ),
    );
  }
  return out;
}

/** The fleet name of a document, when it has a usable one (for duplicate detection). */
export function fleetName(src: SourceDoc): string | undefined {
  const doc = isObj(src.value) ? src.value : {};
  const meta = isObj(doc.metadata) ? doc.metadata : {};
  return typeof meta.name === 'string' && meta.name ? meta.name : undefined;
}

/**
 * One diagnostic per document that shares its name with another, each naming
 * the other locations, so whichever file a person opens tells them where to look.
 */
export function checkDuplicateFleets(docs: readonly SourceDoc[]): Diagnostic[] {
  const byName = new Map<string, Where[]>();
  for (const src of docs) {
    const name = fleetName(src);
    if (name === undefined) continue;
    const list = byName.get(name) ?? [];
    list.push(valueWhere(src, ['metadata', 'name']));
    byName.set(name, list);
  }
  const out: Diagnostic[] = [];
  for (const [name, wheres] of byName) {
    if (wheres.length < 2) continue;
    for (const w of wheres) {
      const others = wheres.filter((o) => o !== w).map(location);
      out.push(diag('spec.duplicate-fleet', `Fleet ${showValue(name)} is also defined at ${others.join(', ')}.`, w));
    }
  }
  return out;
}

/**
 * Hash of what a member VM is built from. Hardware traits are a set, so their
 * order does not count; keys are written in a fixed order so the hash is
 * stable across runs and Node versions. If you add a build input to
 * LoadedFleet, add it here too (or changing it will not update members).
 */
export function specHash(f: { image: string; size: { cpu: number; memoryGiB: number; diskGiB: number }; hardware: readonly string[]; encryptedDisk: boolean }): string {
  const canonical = JSON.stringify({
    encryptedDisk: f.encryptedDisk,
    hardware: [...f.hardware].sort(),
    image: f.image,
    size: { cpu: f.size.cpu, diskGiB: f.size.diskGiB, memoryGiB: f.size.memoryGiB },
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** A valid fleet document with every default filled in (DESIGN.md, "Fleet"). */
export function toLoadedFleet(src: SourceDoc): LoadedFleet {
  const raw = src.value as Fleet;
  const s = raw.spec;
  const size = { cpu: s.size.cpu, memoryGiB: s.size.memoryGiB, diskGiB: s.size.diskGiB };
  const hardware = [...(s.hardware ?? [])];
  const encryptedDisk = s.encryptedDisk ?? false;
  const near = s.placement?.near;
  const pointers = collectPointers(src);
  pointers.delete('');
  return {
    name: raw.metadata.name,
    owner: raw.metadata.owner,
    labels: { ...(raw.metadata.labels ?? {}) },
    count: s.count,
    minCount: s.minCount ?? 0,
    image: s.image,
    size,
    hardware,
    placement: {
      dataCenters: s.placement?.dataCenters ? [...s.placement.dataCenters] : null,
      strategy: s.placement?.strategy ?? 'nearest',
      near: near === undefined ? null : typeof near === 'string' ? near : ({ lat: near.lat, lon: near.lon } satisfies Location),
    },
    state: s.state ?? DEFAULT_STATE,
    encryptedDisk,
    protect: s.protect ?? false,
    rollout: { ...(s.rollout as RolloutSpec | undefined) },
    specHash: specHash({ image: s.image, size, hardware, encryptedDisk }),
    where: docWhere(src),
    pointers: readonlyMap(pointers),
    raw,
  };
}

/** A Map whose mutators throw, since Object.freeze does not stop Map#set. */
export function readonlyMap<K, V>(m: Map<K, V>): ReadonlyMap<K, V> {
  const refuse = (): never => {
    throw new TypeError('bug: this map is read-only');
  };
  for (const v of m.values()) deepFreeze(v);
  return Object.freeze(Object.assign(m, { set: refuse, delete: refuse, clear: refuse }));
}

/** Freezes plain objects and arrays all the way down; leaves class instances (Maps, packs) to their owners. */
export function deepFreeze<T>(v: T): T {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return v;
  const proto = Object.getPrototypeOf(v);
  if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) return v;
  Object.freeze(v);
  for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  return v;
}
