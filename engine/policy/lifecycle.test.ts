import { describe, expect, it } from 'vitest';
import { buildLifecycle, checkLifecycle, type LifecycleDef } from './lifecycle.ts';
import { DEFAULT_LIFECYCLE as lc } from './testdata/fixtures.ts';

const def = (transitions: [string, string][], over: Partial<LifecycleDef> = {}): LifecycleDef => ({
  states: [...new Set(transitions.flat())],
  initial: 'A',
  terminal: ['Z'],
  requestable: ['B'],
  transitions: transitions.map(([from, to]) => ({ from, to })),
  ...over,
});

describe('path', () => {
  const cases: { name: string; from: string; to: string; want: string[] | undefined }[] = [
    { name: 'create to Running', from: 'Requested', to: 'Running', want: ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] },
    { name: 'create to PoweredOff', from: 'Requested', to: 'PoweredOff', want: ['Requested', 'BeingCreated', 'PoweredOff'] },
    { name: 'stop', from: 'Running', to: 'PoweredOff', want: ['Running', 'ShuttingDown', 'PoweredOff'] },
    { name: 'delete a running VM', from: 'Running', to: 'Deleted', want: ['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted'] },
    { name: 'recover a failed boot', from: 'BootFailed', to: 'Running', want: ['BootFailed', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] },
    { name: 'retry a failed create', from: 'CreateFailed', to: 'Running', want: ['CreateFailed', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] },
    { name: 'power off a VM that never booted, without a boot', from: 'PoweredOn', to: 'PoweredOff', want: ['PoweredOn', 'PoweredOff'] },
    { name: 'delete a VM that never booted', from: 'PoweredOn', to: 'Deleted', want: ['PoweredOn', 'PoweredOff', 'BeingDeleted', 'Deleted'] },
    { name: 'a failed boot is left along a recovery edge', from: 'BootFailed', to: 'Deleted', want: ['BootFailed', 'BeingDeleted', 'Deleted'] },
    { name: 'a failure state is never a target', from: 'Starting', to: 'BootFailed', want: undefined },
    { name: 'same state', from: 'Running', to: 'Running', want: ['Running'] },
    { name: 'no way back from terminal', from: 'Deleted', to: 'Running', want: undefined },
    { name: 'unknown state', from: 'Nowhere', to: 'Running', want: undefined },
  ];
  it.each(cases)('$name', ({ from, to, want }) => {
    expect(lc.path(from, to)).toEqual(want);
  });

  it('takes the longer way round rather than through a failure state (the pack without PoweredOn -> PoweredOff)', () => {
    const d: LifecycleDef = {
      states: lc.states,
      initial: lc.initial,
      terminal: lc.terminal,
      requestable: lc.requestable,
      failure: lc.failure,
      transitions: lc.edges.filter((e) => !(e.from === 'PoweredOn' && e.to === 'PoweredOff')),
    };
    // Before, the shortest path was PoweredOn -> Starting -> BootFailed -> PoweredOff: the
    // authority denied the boot it had not planned, and the cloud terminated the VM.
    expect(buildLifecycle(d).path('PoweredOn', 'PoweredOff')).toEqual(['PoweredOn', 'Starting', 'Running', 'ShuttingDown', 'PoweredOff']);
  });

  it('breaks ties between equally short paths by the order of edges in the pack', () => {
    const diamond: [string, string][] = [
      ['A', 'B'],
      ['A', 'C'],
      ['B', 'Z'],
      ['C', 'Z'],
    ];
    expect(buildLifecycle(def(diamond)).path('A', 'Z')).toEqual(['A', 'B', 'Z']);
    const swapped: [string, string][] = [
      ['A', 'C'],
      ['A', 'B'],
      ['B', 'Z'],
      ['C', 'Z'],
    ];
    expect(buildLifecycle(def(swapped)).path('A', 'Z')).toEqual(['A', 'C', 'Z']);
    // Stable across calls.
    const l = buildLifecycle(def(swapped));
    expect(Array.from({ length: 5 }, () => l.path('A', 'Z')!.join())).toEqual(Array(5).fill('A,C,Z'));
  });

  it('prefers a shorter path over an earlier edge', () => {
    const l = buildLifecycle(def([['A', 'B'], ['B', 'C'], ['C', 'Z'], ['A', 'Z']]));
    expect(l.path('A', 'Z')).toEqual(['A', 'Z']);
  });
});

describe('allows, operation, isTerminal', () => {
  const cases: { from: string; to: string; allowed: boolean; op: string | undefined }[] = [
    { from: 'Requested', to: 'BeingCreated', allowed: true, op: 'none' },
    { from: 'BeingCreated', to: 'PoweredOff', allowed: true, op: 'createVm' },
    { from: 'PoweredOn', to: 'Starting', allowed: true, op: 'boot' },
    { from: 'Starting', to: 'Running', allowed: true, op: 'awaitReady' },
    { from: 'BeingDeleted', to: 'Deleted', allowed: true, op: 'deleteVm' },
    { from: 'Requested', to: 'ShuttingDown', allowed: false, op: undefined },
    { from: 'Requested', to: 'Running', allowed: false, op: undefined },
    { from: 'PoweredOff', to: 'PoweredOff', allowed: false, op: undefined },
    { from: 'Deleted', to: 'Requested', allowed: false, op: undefined },
  ];
  it.each(cases)('$from -> $to', ({ from, to, allowed, op }) => {
    expect(lc.allows(from, to)).toBe(allowed);
    expect(lc.operation(from, to)).toBe(op);
  });

  it('allows only when exactly one edge matches', () => {
    const l = buildLifecycle(def([['A', 'B'], ['A', 'B'], ['B', 'Z']]));
    expect(l.allows('A', 'B')).toBe(false);
    expect(l.allows('B', 'Z')).toBe(true);
  });

  it('knows terminal states', () => {
    expect(lc.isTerminal('Deleted')).toBe(true);
    expect(lc.isTerminal('Running')).toBe(false);
  });

  it('is immutable', () => {
    expect(Object.isFrozen(lc)).toBe(true);
    expect(Object.isFrozen(lc.edges)).toBe(true);
    expect(() => (lc.states as string[]).push('X')).toThrow();
  });
});

describe('checkLifecycle', () => {
  const locate = (p: readonly (string | number)[]) => ({ address: p.join('.') });
  const cases: { name: string; def: LifecycleDef; want: [code: string, at: string][] }[] = [
    { name: 'a valid diagram', def: def([['A', 'B'], ['B', 'Z']]), want: [] },
    {
      name: 'transition naming an unknown state',
      def: def([['A', 'B'], ['B', 'Z'], ['B', 'Q']], { states: ['A', 'B', 'Z'] }),
      want: [['policy.unknown-state', 'transitions.2.to']],
    },
    {
      name: 'unknown initial, terminal, requestable and failure entries',
      def: def([['A', 'B'], ['B', 'Z']], { initial: 'X', terminal: ['Z', 'Y'], requestable: ['W'], failure: ['V'] }),
      want: [
        ['policy.unknown-state', 'initial'],
        ['policy.unknown-state', 'terminal.1'],
        ['policy.unknown-state', 'requestable.0'],
        ['policy.unknown-state', 'failure.0'],
      ],
    },
    {
      name: 'state unreachable from initial',
      def: def([['A', 'B'], ['B', 'Z'], ['C', 'Z']]),
      want: [['policy.unreachable-state', 'states.3']],
    },
    {
      name: 'terminal state with an outgoing edge',
      def: def([['A', 'B'], ['B', 'Z'], ['Z', 'A']]),
      want: [['policy.terminal-exit', 'transitions.2']],
    },
    {
      name: 'requestable state that cannot be reached',
      def: def([['A', 'Z'], ['B', 'Z']]),
      want: [
        ['policy.unreachable-state', 'states.2'],
        ['policy.requestable-unreachable', 'requestable.0'],
      ],
    },
    {
      name: 'state from which no terminal state is reachable',
      def: def([['A', 'B'], ['B', 'Z'], ['B', 'C'], ['C', 'D'], ['D', 'C']]),
      want: [
        ['policy.dead-end', 'states.3'],
        ['policy.dead-end', 'states.4'],
      ],
    },
    {
      name: 'requestable state reachable only through a failure state',
      def: def([['A', 'F'], ['F', 'B'], ['B', 'Z']], { failure: ['F'] }),
      // A, too, reaches Z only through F: a VM just requested could never be deleted.
      want: [
        ['policy.dead-end', 'states.0'],
        ['policy.requestable-through-failure', 'requestable.0'],
      ],
    },
    {
      name: 'a failure state listed as requestable',
      def: def([['A', 'B'], ['B', 'Z']], { failure: ['B'] }),
      want: [
        ['policy.dead-end', 'states.0'],
        ['policy.requestable-failure', 'requestable.0'],
      ],
    },
    {
      // Its VMs, once created, could never be deleted: plans never enter a failure state.
      name: 'a state whose only way to a terminal state passes a failure state',
      def: def([['A', 'B'], ['B', 'F'], ['F', 'Z']], { failure: ['F'] }),
      want: [
        ['policy.dead-end', 'states.0'],
        ['policy.dead-end', 'states.1'],
      ],
    },
    {
      // A fleet asking for Deleted had each apply create its members only to
      // delete them, and the next plan create them again (a terminal VM is not
      // live), for ever.
      name: 'a terminal state listed as requestable',
      def: def([['A', 'B'], ['B', 'Z']], { requestable: ['B', 'Z'] }),
      want: [['policy.requestable-terminal', 'requestable.1']],
    },
    {
      // Every create put its VM straight into a failure state: a planned step into one, which DESIGN.md forbids.
      name: 'the initial state listed as a failure state',
      def: def([['A', 'B'], ['B', 'Z']], { failure: ['A'] }),
      want: [['policy.initial-failure', 'failure.0']],
    },
    {
      name: 'duplicate edge',
      def: def([['A', 'B'], ['B', 'Z'], ['A', 'B']]),
      want: [['policy.duplicate-edge', 'transitions.2']],
    },
    {
      name: 'operation outside the closed set (a typo)',
      def: { ...def([]), states: ['A', 'B', 'Z'], transitions: [{ from: 'A', to: 'B', operation: 'powerOnn' }, { from: 'B', to: 'Z', operation: 'deleteVm' }] },
      want: [['policy.unknown-operation', 'transitions.0.operation']],
    },
    {
      name: 'operation named with the wrong case',
      def: { ...def([]), states: ['A', 'B', 'Z'], transitions: [{ from: 'A', to: 'B', operation: 'none' }, { from: 'B', to: 'Z', operation: 'DeleteVm' }] },
      want: [['policy.unknown-operation', 'transitions.1.operation']],
    },
  ];
  it.each(cases)('$name', ({ def: d, want }) => {
    const got = checkLifecycle(d, locate).map((x) => [x.code, x.address]);
    expect(got).toEqual(want);
  });

  it('buildLifecycle refuses a diagram checkLifecycle reports an unknown operation in', () => {
    expect(() => buildLifecycle({ ...def([]), states: ['A', 'Z'], transitions: [{ from: 'A', to: 'Z', operation: 'powerOnn' }] })).toThrow(/unknown operation "powerOnn"/);
  });
});

/**
 * The property DESIGN.md makes load-bearing: no planned path enters a failure
 * state; it may only start in one. Checked for every pair of states of the
 * default pack and of many generated diagrams, against an exhaustive search
 * of the simple paths that avoid failure states (so "no path" is also right,
 * and the path found is a shortest one).
 */
describe('path never enters a failure state', () => {
  /** Mulberry32: a small seeded generator, so a failing case can be replayed from its seed. */
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** Length of the shortest failure-free path by exhaustive DFS over simple paths; undefined when none. */
  function shortest(d: LifecycleDef, from: string, to: string): number | undefined {
    const failure = new Set(d.failure ?? []);
    let best: number | undefined;
    const walk = (s: string, seen: Set<string>) => {
      if (s === to) {
        best = best === undefined ? seen.size : Math.min(best, seen.size);
        return;
      }
      for (const t of d.transitions) {
        if (t.from !== s || seen.has(t.to) || failure.has(t.to)) continue;
        seen.add(t.to);
        walk(t.to, seen);
        seen.delete(t.to);
      }
    };
    walk(from, new Set([from]));
    return best;
  }

  function check(d: LifecycleDef, label: string): number {
    const built = buildLifecycle(d);
    const failure = new Set(d.failure ?? []);
    let checked = 0;
    for (const from of d.states) {
      for (const to of d.states) {
        const got = built.path(from, to);
        const want = shortest(d, from, to);
        const where = `${label}: ${from} -> ${to}`;
        if (want === undefined) {
          expect(got, where).toBeUndefined();
          continue;
        }
        expect(got, where).toBeDefined();
        const path = got as string[];
        expect(path.length, where).toBe(want);
        expect(path[0], where).toBe(from);
        expect(path.at(-1), where).toBe(to);
        expect(path.slice(1).filter((s) => failure.has(s)), where).toEqual([]);
        for (let i = 1; i < path.length; i++) expect(built.allows(path[i - 1], path[i]), `${where}: edge ${path[i - 1]} -> ${path[i]}`).toBe(true);
        checked++;
      }
    }
    return checked;
  }

  it('for every pair of states of the default pack', () => {
    const d: LifecycleDef = {
      states: lc.states,
      initial: lc.initial,
      terminal: lc.terminal,
      requestable: lc.requestable,
      failure: lc.failure,
      transitions: lc.edges,
    };
    expect(check(d, 'default')).toBeGreaterThan(40);
  });

  it('for every pair of states of 300 generated diagrams', () => {
    let paths = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const n = 3 + Math.floor(r() * 6);
      const states = Array.from({ length: n }, (_, i) => `S${i}`);
      const transitions: { from: string; to: string }[] = [];
      for (const from of states) for (const to of states) if (from !== to && r() < 0.3) transitions.push({ from, to });
      const failure = states.filter(() => r() < 0.3);
      paths += check({ states, initial: 'S0', terminal: [], requestable: [], failure, transitions }, `seed ${seed}`);
    }
    expect(paths).toBeGreaterThan(1000);
  });

  /**
   * What checkLifecycle accepts, the planner can plan: in every diagram it
   * reports no error for, a new VM reaches every requestable state, and a VM
   * in any non-terminal state (a failure state included: outcomes put VMs
   * there) can be deleted, along path(), which never enters a failure state.
   * A pack whose only way from PoweredOff to Deleted passed BootFailed was
   * accepted, and its VMs, once created, could never be deleted ("no path
   * from PoweredOff to a terminal state", every plan blocked).
   */
  it('in every generated diagram checkLifecycle accepts, every requestable state and a terminal state can be planned to', () => {
    let accepted = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const r = rng(seed);
      const n = 3 + Math.floor(r() * 6);
      const states = Array.from({ length: n }, (_, i) => `S${i}`);
      const transitions: { from: string; to: string }[] = [];
      const terminal = [states[n - 1]];
      for (const from of states) for (const to of states) if (from !== to && !terminal.includes(from) && r() < 0.35) transitions.push({ from, to });
      const rest = states.slice(1, n - 1);
      const failure = rest.filter(() => r() < 0.3);
      const requestable = rest.filter((s) => !failure.includes(s) && r() < 0.5);
      if (!requestable.length) continue;
      const d: LifecycleDef = { states, initial: 'S0', terminal, requestable, failure, transitions };
      if (checkLifecycle(d, () => ({})).length) continue;
      accepted++;
      const built = buildLifecycle(d);
      for (const s of requestable) expect(built.path('S0', s), `seed ${seed}: S0 -> ${s}`).toBeDefined();
      for (const s of states.filter((x) => !terminal.includes(x))) {
        expect(terminal.some((t) => built.path(s, t) !== undefined), `seed ${seed}: ${s} -> a terminal state (${JSON.stringify(d)})`).toBe(true);
      }
    }
    expect(accepted).toBeGreaterThan(100);
  });
});
