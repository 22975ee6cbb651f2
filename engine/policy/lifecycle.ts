// The lifecycle state diagram: building the immutable Lifecycle and checking
// the diagram at load time (every check is a located diagnostic).
import { diag, quote, type Diagnostic, type Where } from '../diags/index.ts';
import { isOperation, OPERATIONS } from '../model/index.ts';
import type { Edge, Lifecycle } from './types.ts';

export interface LifecycleDef {
  states: readonly string[];
  initial: string;
  terminal: readonly string[];
  requestable: readonly string[];
  failure?: readonly string[];
  transitions: readonly { from: string; to: string; operation?: string }[];
}

/** Locates a node of the lifecycle block by its path below `spec.lifecycle`. */
export type Locate = (path: readonly (string | number)[]) => Where;

/**
 * Builds the diagram. Edges keep the pack's order: path() breaks ties
 * between equally short paths by that order, so plans are deterministic.
 * An operation outside the closed set is a bug here: checkLifecycle reports
 * it (policy.unknown-operation) and loadPack never builds such a pack.
 *
 * path() never enters a failure state (DESIGN.md, "No skipped states"): a
 * failure state is reached only by an outcome (a create that fails, a boot
 * that is denied), never planned through. A path may start in one and leave
 * it along the pack's recovery edges (the edges out of a failure state).
 * Planning through one is what once destroyed VMs: PoweredOn -> PoweredOff
 * by way of Starting -> BootFailed made the authority deny the VM's boot and
 * the cloud terminate it, while the record said PoweredOff.
 */
export function buildLifecycle(def: LifecycleDef, locate?: Locate): Lifecycle {
  const edges: Edge[] = def.transitions.map((t, i) => {
    const operation = t.operation ?? 'none';
    if (!isOperation(operation)) throw new Error(`buildLifecycle: transition ${t.from} -> ${t.to} has unknown operation ${JSON.stringify(operation)}; run checkLifecycle first`);
    const e: Edge = { from: t.from, to: t.to, operation };
    if (locate) e.where = locate(['transitions', i]);
    return Object.freeze(e);
  });
  const out = new Map<string, Edge[]>();
  for (const e of edges) {
    const list = out.get(e.from) ?? [];
    list.push(e);
    out.set(e.from, list);
  }
  const count = (from: string, to: string): number => (out.get(from) ?? []).filter((e) => e.to === to).length;
  const terminal = new Set(def.terminal);
  const failure = new Set(def.failure ?? []);

  const lifecycle: Lifecycle = {
    states: Object.freeze([...def.states]),
    initial: def.initial,
    terminal: Object.freeze([...def.terminal]),
    requestable: Object.freeze([...def.requestable]),
    failure: Object.freeze([...(def.failure ?? [])]),
    edges: Object.freeze(edges),
    allows: (from, to) => count(from, to) === 1,
    operation: (from, to) => (out.get(from) ?? []).find((e) => e.to === to)?.operation,
    isTerminal: (state) => terminal.has(state),
    path: (from, to) => {
      if (from === to) return [from];
      // BFS visiting each state's edges in pack order; the first predecessor
      // recorded for a state wins, which makes ties deterministic. Edges into
      // a failure state are not followed (see above).
      const prev = new Map<string, string>([[from, from]]);
      const queue = [from];
      for (let i = 0; i < queue.length; i++) {
        const s = queue[i];
        for (const e of out.get(s) ?? []) {
          if (prev.has(e.to) || failure.has(e.to)) continue;
          prev.set(e.to, s);
          if (e.to === to) {
            const path = [to];
            let cur = to;
            while (cur !== from) {
              cur = prev.get(cur)!;
              path.push(cur);
            }
            return path.reverse();
          }
          queue.push(e.to);
        }
      }
      return undefined;
    },
  };
  return Object.freeze(lifecycle);
}

function reachableFrom(starts: readonly string[], next: Map<string, string[]>): Set<string> {
  const seen = new Set(starts);
  const queue = [...starts];
  for (let i = 0; i < queue.length; i++) {
    for (const n of next.get(queue[i]) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  return seen;
}

/**
 * Every structural problem of the diagram, located at the offending node:
 * unknown states, duplicate edges, unreachable states, terminal states with
 * exits, unreachable, terminal or failure requestable states, and states
 * from which no plan can reach a terminal state.
 */
export function checkLifecycle(def: LifecycleDef, locate: Locate): Diagnostic[] {
  const diags: Diagnostic[] = [];
  const states = new Set(def.states);
  const unknown = (name: string, what: string, path: (string | number)[]): void => {
    if (!states.has(name)) diags.push(diag('policy.unknown-state', `${what} names state ${quote(name)}, which is not in lifecycle.states.`, locate(path)));
  };
  unknown(def.initial, 'The initial state', ['initial']);
  def.terminal.forEach((s, i) => unknown(s, 'A terminal entry', ['terminal', i]));
  def.requestable.forEach((s, i) => unknown(s, 'A requestable entry', ['requestable', i]));
  (def.failure ?? []).forEach((s, i) => unknown(s, 'A failure entry', ['failure', i]));
  // A create puts its VM in the initial state: were it a failure state, every plan's creates would step into one.
  (def.failure ?? []).forEach((s, i) => {
    if (s === def.initial) {
      diags.push(
        diag(
          'policy.initial-failure',
          `The initial state ${s} is listed as a failure state: every create puts its VM there, so every plan would step into a failure state, which plans never do (failure states are reached only by outcomes). Take ${s} out of lifecycle.failure, or give the diagram another initial state.`,
          locate(['failure', i]),
        ),
      );
    }
  });

  const seenEdges = new Set<string>();
  const next = new Map<string, string[]>();
  const back = new Map<string, string[]>();
  def.transitions.forEach((t, i) => {
    unknown(t.from, `Transition ${t.from} -> ${t.to}`, ['transitions', i, 'from']);
    unknown(t.to, `Transition ${t.from} -> ${t.to}`, ['transitions', i, 'to']);
    if (t.operation !== undefined && !isOperation(t.operation)) {
      diags.push(
        diag(
          'policy.unknown-operation',
          `Transition ${t.from} -> ${t.to} names operation "${t.operation}"; an edge's operation is one of ${OPERATIONS.join(', ')}.`,
          locate(['transitions', i, 'operation']),
        ),
      );
    }
    const key = `${t.from}\u0000${t.to}`;
    if (seenEdges.has(key)) {
      diags.push(diag('policy.duplicate-edge', `Transition ${t.from} -> ${t.to} is listed more than once.`, locate(['transitions', i])));
    }
    seenEdges.add(key);
    if (def.terminal.includes(t.from)) {
      diags.push(diag('policy.terminal-exit', `Terminal state ${t.from} has a transition to ${t.to}.`, locate(['transitions', i])));
    }
    next.set(t.from, [...(next.get(t.from) ?? []), t.to]);
    back.set(t.to, [...(back.get(t.to) ?? []), t.from]);
  });

  if (!states.has(def.initial)) return diags;
  const reachable = reachableFrom([def.initial], next);
  const failure = new Set(def.failure ?? []);
  const plannable = reachableFrom(
    [def.initial],
    new Map([...next].map(([from, tos]) => [from, tos.filter((t) => !failure.has(t))])),
  );
  const terminals = def.terminal.filter((s) => states.has(s));
  const canFinish = reachableFrom(terminals, back);
  // A delete is planned along path(), which never enters a failure state: a
  // state whose every way to a terminal state passes one is a dead end for
  // plans (a pack without PoweredOff -> BeingDeleted, whose only way out
  // was through BootFailed, was accepted, and its VMs could never be deleted).
  const plannedBack = new Map<string, string[]>();
  for (const t of def.transitions) if (!failure.has(t.to)) plannedBack.set(t.to, [...(plannedBack.get(t.to) ?? []), t.from]);
  const canFinishPlanned = reachableFrom(terminals, plannedBack);
  def.states.forEach((s, i) => {
    if (!reachable.has(s)) {
      diags.push(diag('policy.unreachable-state', `State ${s} cannot be reached from the initial state ${def.initial}.`, locate(['states', i])));
    }
    if (def.terminal.includes(s)) return;
    if (!canFinish.has(s)) {
      diags.push(diag('policy.dead-end', `No path leads from state ${s} to a terminal state (${def.terminal.join(', ')}).`, locate(['states', i])));
    } else if (!canFinishPlanned.has(s)) {
      diags.push(
        diag(
          'policy.dead-end',
          `Every path from state ${s} to a terminal state (${def.terminal.join(', ')}) passes a failure state (${[...failure].join(', ')}), and plans never enter one: a VM in ${s} could never be deleted. Add a transition toward a terminal state that passes no failure state.`,
          locate(['states', i]),
        ),
      );
    }
  });
  def.requestable.forEach((s, i) => {
    if (states.has(s) && !reachable.has(s)) {
      diags.push(diag('policy.requestable-unreachable', `Fleets may request state ${s}, but it cannot be reached from ${def.initial}.`, locate(['requestable', i])));
    } else if (states.has(s) && def.terminal.includes(s)) {
      // A fleet asking for it had each apply create its members only to
      // delete them, and the next plan (a terminal VM is not live) create
      // them again. Lowering count is how members are deleted.
      diags.push(
        diag(
          'policy.requestable-terminal',
          `Fleets may request state ${s}, but it is terminal: every apply would create the fleet's members only to delete them, and the next plan create them again. To delete members, lower a fleet's count or remove its spec.`,
          locate(['requestable', i]),
        ),
      );
    } else if (states.has(s) && failure.has(s)) {
      diags.push(diag('policy.requestable-failure', `Fleets may request state ${s}, but it is a failure state: failure states are reached only by outcomes, never planned.`, locate(['requestable', i])));
    } else if (states.has(s) && !plannable.has(s)) {
      diags.push(
        diag(
          'policy.requestable-through-failure',
          `Fleets may request state ${s}, but every path from ${def.initial} to it passes a failure state (${[...failure].join(', ')}), and plans never pass one. Add an edge that reaches ${s} without a failure state.`,
          locate(['requestable', i]),
        ),
      );
    }
  });
  return diags;
}

/**
 * The states a VM may boot in: those a `boot` edge leaves or enters. The
 * authority answers a boot only while the record holds the VM in one
 * (engine/authority/boot.ts), so nothing but an approved edge may move the
 * record into one: `fleet refresh` never records drift there
 * (engine/apply/refresh.ts, driftPath).
 */
export function bootStates(lifecycle: Lifecycle): string[] {
  return [...new Set(lifecycle.edges.filter((e) => e.operation === 'boot').flatMap((e) => [e.from, e.to]))];
}

/**
 * The states a `boot` edge enters (the default pack's `Starting`): a VM in
 * one is in a boot its edge started, the one a denial of its agent is about
 * (FleetRecord.deniedBoots).
 */
export function bootedStates(lifecycle: Lifecycle): string[] {
  return [...new Set(lifecycle.edges.filter((e) => e.operation === 'boot').map((e) => e.to))];
}

/**
 * Whether an edge into `to` commits a VM to deletion: no state a spec may ask
 * for (requestable) can be reached from `to` any more (the default pack:
 * PoweredOff -> BeingDeleted, BootFailed -> BeingDeleted, BeingDeleted ->
 * Deleted). The protect check stops a deletion at its first such edge, before
 * anything is lost.
 */
export function commitsToDeletion(lifecycle: Lifecycle, to: string): boolean {
  if (lifecycle.isTerminal(to)) return true;
  return !lifecycle.requestable.some((s) => lifecycle.path(to, s) !== undefined);
}
