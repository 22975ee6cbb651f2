// importedState: the state `fleet import` records a VM in, from the state its
// cloud reports (a table, no record or data center).
import { describe, expect, it } from 'vitest';
import { buildLifecycle } from '../../policy/index.ts';
import { DEFAULT_LIFECYCLE as lc } from '../../policy/testdata/fixtures.ts';
import { importedState } from './import.ts';

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
  const cases = [
    { name: 'booting (Starting): its token is not the record\'s, so the failure its boot ends in', pack: lc, observed: 'Starting', want: { state: 'BootFailed' } },
    { name: 'booting, and the pack has no failure edge from Starting: refused', pack: noBootFailure, observed: 'Starting', want: { refused: true } },
    { name: 'powered on, not booting: no token asks; the next apply boots it', pack: lc, observed: 'PoweredOn', want: { state: 'PoweredOn' } },
    { name: 'Running: as reported', pack: lc, observed: 'Running', want: { state: 'Running' } },
    { name: 'PoweredOff: as reported', pack: lc, observed: 'PoweredOff', want: { state: 'PoweredOff' } },
    { name: 'BootFailed: as reported', pack: lc, observed: 'BootFailed', want: { state: 'BootFailed' } },
    { name: 'ShuttingDown: as reported', pack: lc, observed: 'ShuttingDown', want: { state: 'ShuttingDown' } },
  ];
  it.each(cases)('$name', ({ pack, observed, want }) => {
    expect(importedState(pack, observed)).toEqual(want);
  });
});
