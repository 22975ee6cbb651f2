// The new members of a fleet: each placed in a data center (./placement.ts)
// and created along the diagram from the initial state to the fleet's. On a
// first import this runs 100,000 times, so what every create of a fleet
// shares (path, steps) is built once and each change is built in the
// document's key order.
import type { PlanVmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { formatVmAddress } from '../model/index.ts';
import { Placer, fleetPlacement } from './placement.ts';
import { memberName, type PlanState } from './plan-state.ts';
import type { Change } from './types.ts';

/** Places the wanted new members one by one; returns their changes and a way to give the capacity back. */
export function placeNew(s: PlanState, spec: LoadedFleet, kept: readonly PlanVmRow[], wanted: readonly number[]): { changes: Change[]; undo: () => void } {
  const changes: Change[] = [];
  const taken: string[] = [];
  const undo = () => {
    for (const dc of taken) s.release(dc, spec.size);
  };
  if (wanted.length === 0) return { changes, undo };
  const { stack, pack } = s.input;
  const fp = fleetPlacement(stack, pack, spec);
  if (fp.unknownNear !== undefined) {
    s.violate('placement', spec.name, `near names ${fp.unknownNear}, which is neither the site nor a data center; using the site ${fp.nearName}`, 'set placement.near to a data center, the site, or {lat, lon}', 'advisory');
  }
  if (fp.eligible.length === 0) {
    const why = fp.excluded.map((e) => `${e.dataCenter}: ${e.why}`).join('; ');
    s.violate('placement', spec.name, `no data center can hold members of ${spec.name} (${why})`, 'change hardware, image or placement.dataCenters');
    return { changes, undo };
  }
  const members = new Map<string, number>();
  for (const r of kept) members.set(r.dataCenter, (members.get(r.dataCenter) ?? 0) + 1);
  const placer = new Placer(fp, s.capacity, members);
  const { lc } = s;
  const path = s.path(lc.initial, spec.state);
  // One frozen path and step list for every create of the fleet: the same JSON, built once.
  const shared = path ? { path: Object.freeze([...path]) as string[], steps: Object.freeze(s.steps(path, 'current')) as Change['steps'] } : undefined;
  const reasonHead = `count is ${spec.count}; `;
  // One frozen size for every create of the fleet, so its text is written once (json-text.ts).
  const size = Object.freeze({ ...spec.size });
  // The image per data center, looked up once per fleet rather than once per member.
  const images = new Map<string, Change['image']>();
  const imageIn = (dc: string) => {
    let img = images.get(dc);
    if (!img) images.set(dc, (img = s.image(spec.image, dc)));
    return img;
  };
  for (const index of wanted) {
    const { dataCenter, explanation } = placer.next();
    if (dataCenter === undefined) break;
    s.take(dataCenter, spec.size);
    taken.push(dataCenter);
    const address = formatVmAddress(spec.name, index);
    if (!shared) {
      s.violate('lifecycle', address, `no path from ${lc.initial} to ${spec.state} in the diagram`, 'fix the pack lifecycle');
      break;
    }
    // The document's key order (CHANGE_KEYS in assemble.ts): a create is final here, never waved or reordered.
    changes.push({
      address,
      fleet: spec.name,
      index,
      name: memberName(stack.name, spec.name, index),
      dataCenter,
      action: 'create',
      from: lc.initial,
      to: spec.state,
      path: shared.path,
      steps: shared.steps,
      reason: `${reasonHead}${address} does not exist`,
      image: imageIn(dataCenter),
      size,
      placement: explanation,
      specHash: spec.specHash,
      encryptedDisk: spec.encryptedDisk,
    });
  }
  if (changes.length < wanted.length) {
    const cap = s.policy.capacityGrantFor(pack, spec, wanted.length, changes.length, {
      existing: kept.length,
      dataCenters: fp.eligible.map((d) => d.name),
    });
    s.violations.push(...cap.violations);
    if (cap.grant) s.grants.push(cap.grant);
  }
  return { changes, undo };
}
