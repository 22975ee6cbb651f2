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
    { name: 'same state', from: 'Running', to: 'Running', want: ['Running'] },
    { name: 'no way back from terminal', from: 'Deleted', to: 'Running', want: undefined },
    { name: 'unknown state', from: 'Nowhere', to: 'Running', want: undefined },
  ];
  it.each(cases)('$name', ({ from, to, want }) => {
    expect(lc.path(from, to)).toEqual(want);
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
