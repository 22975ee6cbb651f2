// importedState: the state `fleet import` records a VM in, from the state its
// cloud reports (a table, no record or data center).
import { describe, expect, it } from 'vitest';
import { buildLifecycle } from '../../policy/index.ts';
import { DEFAULT_LIFECYCLE as lc } from '../../policy/testdata/fixtures.ts';
import { importedState, taggedFleetWayBack, type BootEvidence } from './import.ts';

const EVIDENCE: readonly BootEvidence[] = ['agent-ready', 'authorized', 'none'];
const every = (v: { state: string } | { refused: true }): Record<BootEvidence, typeof v> => ({ 'agent-ready': v, authorized: v, none: v });

describe('importedState', () => {
  // The default pack without Starting -> BootFailed: a booting VM has no failure state to be recorded in.
  const noBootFailure = buildLifecycle({
    states: [...lc.states],
    initial: lc.initial,
    terminal: [...lc.terminal],
    requestable: [...lc.requestable],
    failure: [...lc.failure],
    transitions: lc.edges.filter((e) => !(e.from === 'Starting' && e.to === 'BootFailed')).map((e) => ({ ...e })),
  });
  // Every row as each evidence would have it: only a running VM's record depends on it.
  const cases: { name: string; pack: typeof lc; observed: string; want: Record<BootEvidence, { state: string } | { refused: true }> }[] = [
    { name: 'booting (Starting): its token is not the record\'s, so the failure its boot ends in', pack: lc, observed: 'Starting', want: every({ state: 'BootFailed' }) },
    { name: 'booting, and the pack has no failure edge from Starting: refused', pack: noBootFailure, observed: 'Starting', want: every({ refused: true }) },
    { name: 'powered on, not booting: no token asks; the next apply boots it', pack: lc, observed: 'PoweredOn', want: every({ state: 'PoweredOn' }) },
    {
      name: 'Running: as reported when its agent\'s ready report or the record confirms the handshake; otherwise the failure of the boot it may still be in',
      pack: lc,
      observed: 'Running',
      want: { 'agent-ready': { state: 'Running' }, authorized: { state: 'Running' }, none: { state: 'BootFailed' } },
    },
    {
      name: 'Running, unconfirmed, and the pack has no failure edge from Starting: refused',
      pack: noBootFailure,
      observed: 'Running',
      want: { 'agent-ready': { state: 'Running' }, authorized: { state: 'Running' }, none: { refused: true } },
    },
    { name: 'PoweredOff: as reported', pack: lc, observed: 'PoweredOff', want: every({ state: 'PoweredOff' }) },
    { name: 'BootFailed: as reported', pack: lc, observed: 'BootFailed', want: every({ state: 'BootFailed' }) },
    { name: 'ShuttingDown: as reported', pack: lc, observed: 'ShuttingDown', want: every({ state: 'ShuttingDown' }) },
  ];
  it.each(cases.flatMap((c) => EVIDENCE.map((evidence) => ({ ...c, evidence }))))('$name (evidence $evidence)', ({ pack, observed, evidence, want }) => {
    expect(importedState(pack, observed, evidence)).toEqual(want[evidence]);
  });
});

// The way an import refused for a VM whose cloud tags name another fleet points to (apply.import-refused's detail).
describe('taggedFleetWayBack', () => {
  const fleets = [
    { name: 'web', count: 2 },
    { name: 'idle', count: 0 },
  ];
  const vm = (fleet: string, address?: string) => ({ fleet, ...(address !== undefined ? { address } : {}), cloudId: 'i-0abc', dataCenter: 'miami' });
  const cases = [
    { name: 'its member exists: that import', vm: vm('web', 'web/1'), want: '`fleet import web/1 i-0abc` imports it where it belongs.' },
    // Not another member of its fleet: that import is refused too (its tags name web/5).
    { name: 'its member is past count: raise count to reach it', vm: vm('web', 'web/5'), want: 'Fleet web has count 2 (members web/0 to web/1): raise it to at least 6, then `fleet import web/5 i-0abc` imports it where it belongs.' },
    { name: 'no address tag: any member of its fleet', vm: vm('web'), want: '`fleet import web/<index> i-0abc` imports it into fleet web (members web/0 to web/1), where it belongs.' },
    { name: 'its fleet has count 0: raise it first', vm: vm('idle', 'idle/0'), want: 'Fleet idle has count 0: raise it to at least 1, then `fleet import idle/0 i-0abc` imports it where it belongs.' },
    { name: 'its fleet has count 0, no address tag: raise it first', vm: vm('idle'), want: 'Fleet idle has count 0: raise it, then `fleet import idle/0 i-0abc` imports it where it belongs.' },
    { name: 'its fleet is not in the specs: declare it first', vm: vm('gone', 'gone/3'), want: 'Fleet gone is not in the specs of stack prod: declare it, then `fleet import gone/3 i-0abc` imports it where it belongs (or delete the VM in miami).' },
  ];
  it.each(cases)('$name', ({ vm, want }) => {
    expect(taggedFleetWayBack(fleets, 'prod', vm)).toBe(want);
  });
});
