// What one member needs, decided once for everyone who decides it: the
// planner (engine/plan/planner.ts) and the per-data-center providers
// (providers/provider.ts, under `fleet apply` and under a Pulumi program)
// classify a member's difference from its spec and walk the lifecycle with
// these functions and no others, so they can never disagree on which fields
// force a new VM, where a resize happens, or which path a VM takes.
//
// | what differs from the spec                  | action     |
// | ------------------------------------------- | ---------- |
// | nothing (state, hash, image, disk, size)    | noop       |
// | image, encryptedDisk or hardware traits     | replace    |
// | size only (with or without the state)       | update     |
// | the state only                              | transition |
//
// Pure functions over their arguments; no I/O.
import { sameSize, type Action, type Operation, type Step, type VmSize } from '../model/index.ts';
import type { Lifecycle } from '../policy/types.ts';

/** The operation of the in-place step that resizes a VM (see docs/plan-format.md, "Steps"). */
export const RESIZE_OPERATION: Operation = 'resize';

/** What is compared of a member: the VM as it is, or as its spec wants it. */
export interface MemberShape {
  state: string;
  image: string;
  encryptedDisk: boolean;
  size: VmSize;
  /** Hash of what the member is built from (image, size, hardware, encryptedDisk). */
  specHash: string;
}

/** A field that changes, `{ from, to }` (the plan document's `diff`). */
export type FieldDiff = Record<string, { from: unknown; to: unknown }>;

/** The fields whose change needs a new VM (a replace). */
export const REPLACE_FIELDS = ['image', 'encryptedDisk', 'hardware'] as const;

export interface Classified {
  action: Extract<Action, 'noop' | 'transition' | 'update' | 'replace'>;
  /** What changes (empty for noop and transition). */
  diff: FieldDiff;
}

/** Shared by every unchanged member (the common case on a big stack: no allocation). */
const NOOP: Classified = Object.freeze({ action: 'noop', diff: Object.freeze({}) as FieldDiff });

/**
 * How an existing member differs from its spec. `hardware` is the spec's
 * traits: the record keeps none, so a spec hash change that image, size and
 * encryptedDisk do not explain is a hardware change (`from: null`).
 */
export function classifyMember(current: MemberShape, wanted: MemberShape & { hardware?: readonly string[] }): Classified {
  if (
    current.state === wanted.state &&
    current.specHash === wanted.specHash &&
    current.image === wanted.image &&
    current.encryptedDisk === wanted.encryptedDisk &&
    sameSize(current.size, wanted.size)
  ) {
    return NOOP;
  }
  const diff: FieldDiff = {};
  if (current.image !== wanted.image) diff.image = { from: current.image, to: wanted.image };
  if (current.encryptedDisk !== wanted.encryptedDisk) diff.encryptedDisk = { from: current.encryptedDisk, to: wanted.encryptedDisk };
  if (!sameSize(current.size, wanted.size)) diff.size = { from: current.size, to: wanted.size };
  if (current.specHash !== wanted.specHash && Object.keys(diff).length === 0) diff.hardware = { from: null, to: wanted.hardware ?? null };
  if (diff.image || diff.encryptedDisk || diff.hardware) return { action: 'replace', diff };
  if (diff.size) return { action: 'update', diff };
  return { action: 'transition', diff };
}

/**
 * The state where a resize is applied: the state of a pack edge whose
 * operation is `resize`, else the state the `createVm` edge leads to (a
 * created, powered-off VM), else `PoweredOff`.
 */
export function resizeState(lc: Lifecycle): string {
  const resize = lc.edges.find((e) => e.operation === RESIZE_OPERATION);
  if (resize) return resize.from;
  const created = lc.edges.find((e) => e.operation === 'createVm');
  return created ? created.to : 'PoweredOff';
}

/** The steps along a path of states, each with its edge's operation. */
export function stepsAlong(lc: Lifecycle, path: readonly string[], member: Step['member']): Step[] {
  const out: Step[] = [];
  for (let i = 0; i + 1 < path.length; i++) {
    out.push({ from: path[i], to: path[i + 1], member, operation: lc.operation(path[i], path[i + 1]) ?? 'none' });
  }
  return out;
}

/**
 * Whether steps act on a VM that exists in the cloud: their first cloud
 * operation (the first that is not `none`) is anything but `createVm`. A VM
 * in a failure state whose cloud VM is gone cannot be recovered by such a
 * path (BootFailed -> PoweredOff would power off nothing); the planner then
 * deletes it along the recovery edges and creates it again.
 */
export function needsCloudVm(steps: readonly Step[]): boolean {
  const first = steps.find((s) => s.operation !== 'none');
  return first !== undefined && first.operation !== 'createVm';
}

/** Shortest path to the nearest terminal state (ties: the pack's order of terminal states); undefined when none. */
export function deletePath(lc: Lifecycle, state: string): string[] | undefined {
  let best: string[] | undefined;
  for (const t of lc.terminal) {
    const p = lc.path(state, t);
    if (p && (!best || p.length < best.length)) best = p;
  }
  return best;
}

/**
 * An in-place resize from `from` to `to`: down to the resize state, the
 * resize step (`from === to`), then on to `to`. `path` is every state passed;
 * undefined names the leg that has no path.
 */
export function resizeSteps(lc: Lifecycle, from: string, to: string, member: Step['member'] = 'current'): { path: string[]; steps: Step[] } | { missing: { from: string; to: string } } {
  const at = resizeState(lc);
  const down = lc.path(from, at);
  if (!down) return { missing: { from, to: at } };
  const up = lc.path(at, to);
  if (!up) return { missing: { from: at, to } };
  return {
    path: [...down, ...up.slice(1)],
    steps: [...stepsAlong(lc, down, member), { from: at, to: at, member, operation: RESIZE_OPERATION }, ...stepsAlong(lc, up, member)],
  };
}
