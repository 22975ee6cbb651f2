// The providers as Pulumi runs them: serialized with
// pulumi.runtime.serializeFunction (what pulumi.dynamic.Resource stores in the
// state), loaded in a fresh Node process the way the dynamic-provider host
// loads them, and called against the embedded services over loopback HTTP.
// The host reports a rejection's `e.message` and nothing else, so every
// failure must arrive as an Error with a message a person can act on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computePlan, noRulesPolicy } from '../../engine/plan/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import type { VmInputs, VmOutputs } from '../provider.ts';
import type { FleetInputs, FleetOutputs } from './fleet.ts';
import { providerOptions, type FleetStack } from './stack.ts';
import { ProviderHost, downUrl, failingProxy, serializeProviders, startEmbeddedStack, type EmbeddedStack, type HostError } from './testing.ts';
import type { VmResourceInputs, VmResourceOutputs } from './vm.ts';

let es: EmbeddedStack;
let down: string;
const hosts: ProviderHost[] = [];
/** Serialized text of each provider the tests run. */
let texts: Record<Serialized, string>;
type Serialized = 'dc' | 'dc-down' | 'vm' | 'vm-down' | 'fleet' | 'fleet-down';

beforeAll(async () => {
  es = await startEmbeddedStack();
  down = await downUrl();
  const fs = es.fleetStack;
  const downStack: FleetStack = { ...fs, retries: 0, dataCenters: fs.dataCenters.map((d) => ({ ...d, url: down })) };
  texts = await serializeProviders<Serialized>({
    dc: { kind: 'dc', options: providerOptions(fs, 'miami') },
    'dc-down': { kind: 'dc', options: { ...providerOptions(fs, 'miami'), url: down, retries: 0 } },
    vm: { kind: 'vm', options: providerOptions(fs, 'richmond') },
    'vm-down': { kind: 'vm', options: { ...providerOptions(fs, 'richmond'), url: down, retries: 0 } },
    fleet: { kind: 'fleet', stack: fs },
    'fleet-down': { kind: 'fleet', stack: downStack },
  });
  // Two child processes (tsx, then Pulumi's serializer) on a shared machine: allow minutes, decide nothing by time.
}, 300_000);
afterAll(async () => {
  for (const h of hosts) await h.close();
  await es?.close();
});

async function host(which: Serialized, env: Record<string, string> = {}): Promise<{ host: ProviderHost; text: string }> {
  const h = await ProviderHost.start(texts[which], env);
  hosts.push(h);
  return { host: h, text: texts[which] };
}

function vm(over: Partial<VmInputs> = {}): VmInputs {
  const fleet = over.fleet ?? 'api';
  const index = over.index ?? 0;
  const base = { image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true };
  return {
    stack: es.stack.name,
    fleet,
    owner: 'team-payments',
    index,
    name: `${es.stack.name}-${fleet}-${index}`,
    ...base,
    desiredState: 'Running',
    specHash: specHash({ ...base, hardware: [] }),
    planId: null,
    ...over,
  };
}

/** Every way the host can see a failure, checked at once: an Error, its name, and a message naming what, why and where. */
function expectActionable(e: HostError, code: string, ...parts: (string | RegExp)[]): void {
  expect(e.isError).toBe(true);
  expect(e.name).toBe('FleetError');
  expect(e.message).toBeTruthy();
  expect(e.diagnostics?.map((d) => d.code)).toContain(code);
  for (const p of parts) expect(e.message).toMatch(p);
}

/**
 * The two ways a program reaches a data center: DataCenterProvider reads the
 * token from the environment variable the stack names (as `fleet apply`
 * does); VmProvider (the Vm resource) gets it in the call, from a Pulumi
 * secret, and the host's environment holds none.
 */
const KINDS = [
  {
    kind: 'DataCenterProvider, token from the environment',
    dc: 'miami',
    serialized: 'dc' as const,
    env: () => ({ [tokenEnv('miami')]: es.tokens.miami }),
    inputs: (over: Partial<VmInputs> = {}): VmResourceInputs => vm(over),
  },
  {
    kind: 'VmProvider, token in the inputs',
    dc: 'richmond',
    serialized: 'vm' as const,
    env: () => ({}),
    inputs: (over: Partial<VmInputs> = {}): VmResourceInputs => ({ ...vm(over), token: es.tokens.richmond }),
  },
];

const tokenEnv = (dc: string) => es.fleetStack.dataCenters.find((d) => d.name === dc)!.tokenEnv;

describe.each(KINDS)('$kind, serialized and run in a fresh process', ({ dc, serialized, env, inputs }) => {
  it('carries no token in its serialized text, only the variable name and the URL', async () => {
    const { text } = await host(serialized);
    for (const t of Object.values(es.tokens)) expect(text).not.toContain(t);
    expect(text).toContain(es.fleetStack.dataCenters.find((d) => d.name === dc)!.url);
    expect(text).toContain(tokenEnv(dc));
  });

  it('check, create, read, diff, update and delete a VM end to end', async () => {
    const { host: h } = await host(serialized, env());
    const ins = inputs({ index: 1 });
    expect((await h.ok<{ failures: unknown[] }>('check', {}, ins)).failures).toEqual([]);
    const created = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', ins);
    expect(created.outs).toMatchObject({ state: 'Running', dataCenter: dc, vmId: created.id });
    expect((await h.ok<{ props: VmOutputs }>('read', created.id, created.outs)).props.state).toBe('Running');
    const news = { ...ins, size: { cpu: 4, memoryGiB: 8, diskGiB: 20 }, desiredState: 'PoweredOff' };
    expect(await h.ok('diff', created.id, created.outs, news)).toMatchObject({ changes: true, replaces: [] });
    const updated = await h.ok<{ outs: VmResourceOutputs }>('update', created.id, created.outs, news);
    expect(updated.outs).toMatchObject({ state: 'PoweredOff', size: news.size });
    await h.ok('delete', created.id, updated.outs);
    expect((await es.record.getVm(created.id))?.state).toBe('Deleted');
    expect(await h.ok('read', created.id, updated.outs)).toEqual({});
  });

  // As a Fleet's: `pulumi import` (or a state that lost the outputs) reads with no saved properties, or only the host's
  // __provider; the answer was a bare `{ id }`, which the next diff could not compare.
  it.each([
    ['no properties', () => []],
    ['only the provider Pulumi\'s host keeps', () => [{ __provider: 'serialized provider text' }]],
  ])('read with %s rejects saying a VM cannot be imported and what to do instead', async (_what, rest) => {
    const { host: h } = await host(serialized, env());
    const created = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', inputs({ index: 6, desiredState: 'PoweredOff' }));
    const e = await h.rejected('read', created.id, ...rest());
    expectActionable(e, 'apply.import-refused', /^Import refused: /, new RegExp(`VM ${created.id}`), /pulumi up/, /fleet apply/);
    await h.ok('delete', created.id, created.outs);
  });

  it('against a DMZ client that is down, every call that needs it rejects with an Error saying which client and why', async () => {
    const url = down;
    const { host: h } = await host(`${serialized}-down`, env());
    const ins = inputs({ index: 2 });
    // check and diff are local: they answer without the DMZ client.
    expect((await h.ok<{ failures: unknown[] }>('check', {}, ins)).failures).toEqual([]);
    const outs = { ...ins, vmId: 'vm-down', dataCenter: dc, state: 'Running', cloudId: null, realImage: null, version: 1 };
    expect(await h.ok('diff', 'vm-down', outs, ins)).toMatchObject({ changes: false });
    const calls: [string, unknown[]][] = [
      ['create', [ins]],
      ['read', ['vm-down', outs]],
      ['update', ['vm-down', outs, { ...ins, desiredState: 'PoweredOff' }]],
      ['delete', ['vm-down', outs]],
    ];
    for (const [method, args] of calls) {
      const e = await h.rejected(method, ...args);
      expectActionable(e, 'apply.dmz-unreachable', /^DMZ client unreachable: /, url, `data center ${dc}`, /could not be reached \(ECONNREFUSED\)/);
    }
  });

  it('a create the authority vetoes rejects with the authority\'s reason and leaves nothing', async () => {
    const { host: h } = await host(serialized, env());
    const e = await h.rejected('create', inputs({ fleet: 'vetoed', image: 'debian-12' }));
    expectActionable(e, 'apply.step-vetoed', /^Request vetoed by the authority: /, /vetoed\/0/, `image debian-12 has no translation for data center ${dc}`);
    expect((await es.record.listVms(es.stack.name)).filter((v) => v.fleet === 'vetoed')).toEqual([]);
  });

  it('delete succeeds on a VM deleted already, and walks one the record holds in another state down from there', async () => {
    const { host: h } = await host(serialized, env());
    // Deleted already: by an earlier delete (a Fleet's delete retried after another member failed), or outside the program.
    const gone = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', inputs({ index: 4 }));
    await h.ok('delete', gone.id, gone.outs);
    await h.ok('delete', gone.id, gone.outs);
    expect((await es.record.getVm(gone.id))?.state).toBe('Deleted');
    // Stopped outside the program: the outputs still say Running.
    const stopped = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', inputs({ index: 5 }));
    await h.ok('update', stopped.id, stopped.outs, { ...inputs({ index: 5 }), desiredState: 'PoweredOff' });
    await h.ok('delete', stopped.id, stopped.outs);
    expect((await es.record.getVm(stopped.id))?.state).toBe('Deleted');
  });

  // Found by QA: a create that failed mid-walk and whose clean-up failed too threw a plain error: Pulumi recorded no
  // resource, and the VM it said 'may still exist' was in no state.
  it('a create whose clean-up fails answers the VM as a partial resource (id and properties), so Pulumi keeps it', async () => {
    const proxy = await failingProxy(es.fleetStack.dataCenters.find((d) => d.name === dc)!.url, '"to":"Starting"');
    try {
      const fs = es.fleetStack;
      const options = { ...providerOptions(fs, dc), url: proxy.url, retries: 0 };
      const { p: text } = await serializeProviders({ p: { kind: serialized, options } });
      const h = await ProviderHost.start(text, env());
      hosts.push(h);
      const ins = inputs({ fleet: `stuck-${dc}`, index: 0 });
      const e = await h.rejected('create', ins);
      expect(e.message).toMatch(/may still exist/);
      expect(e.id).toBeTruthy();
      expect(e.properties).toMatchObject({ vmId: e.id, dataCenter: dc, fleet: `stuck-${dc}`, state: 'PoweredOn' });
      if ('token' in ins) expect(e.properties).toMatchObject({ token: ins.token });
      expect((await es.record.getVm(e.id!))?.state).toBe('PoweredOn');
    } finally {
      await proxy.close();
    }
  }, 120_000);

  // The denied path as Pulumi's host runs it (docs/pulumi.md, "A denied boot"): the boot the authority denies, with a
  // data center that cannot delete the VM, fails the update with the VM as a partial resource marked bootDenied (the
  // host hands Pulumi e.properties), the next diff answers a replace, an update all the same is refused, and the
  // replace (delete, then create) never boots the denied VM again.
  it('a boot the authority denies: the partial resource is marked, the next diff replaces it, the replace never boots it again', async () => {
    const { host: h } = await host(serialized, env());
    const sim = es.embedded.drivers.get(dc)!;
    const ins = inputs({ fleet: `denied-${dc}`, index: 0, desiredState: 'PoweredOff' });
    const created = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', ins);
    const running = { ...ins, desiredState: 'Running' };
    sim.setFaults({ forgeBootTokens: true, failCalls: ['deleteVm'] });
    let e: HostError;
    try {
      e = await h.rejected('update', created.id, created.outs, running);
    } finally {
      sim.setFaults({});
    }
    expect(e.message).toMatch(/boot denied/);
    expect(e.properties).toMatchObject({ vmId: created.id, state: 'BootFailed', bootDenied: true });
    const olds = e.properties as unknown as VmResourceOutputs;
    expect(await h.ok('diff', created.id, olds, running)).toEqual({ changes: true, replaces: ['bootDenied'], deleteBeforeReplace: true });
    expectActionable(await h.rejected('update', created.id, olds, running), 'apply.step-vetoed', /pulumi up --replace/);
    await h.ok('delete', created.id, olds);
    const again = await h.ok<{ id: string; outs: VmResourceOutputs }>('create', running);
    expect(again.outs).toMatchObject({ state: 'Running' });
    const history = (await es.record.history(es.stack.name, `denied-${dc}/0`)).filter((x) => x.vmId === created.id).map((x) => `${x.from} -> ${x.to} ${x.outcome}`);
    expect(history).toContain('BeingDeleted -> Deleted ok');
    expect(history).not.toContain('BootFailed -> PoweredOff ok');
    await h.ok('delete', again.id, again.outs);
  }, 120_000);

  it('a missing token is named in the message', async () => {
    // VmProvider without a token in the call falls back to the environment, like DataCenterProvider.
    const { host: h } = await host(serialized, {});
    const ins = { ...inputs({ index: 3 }), token: undefined };
    expectActionable(await h.rejected('create', ins), 'apply.token-missing', /^Data center token not set: /, tokenEnv(dc));
  });
});

describe('FleetProvider (the Fleet resource), serialized and run in a fresh process', () => {
  const spec = { name: 'web', owner: 'team-payments', count: 3, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }, encryptedDisk: true, placement: { strategy: 'spread' as const } };
  const hash = (s: typeof spec) => specHash({ image: s.image, size: s.size, hardware: [], encryptedDisk: s.encryptedDisk });
  const fleetInputs = (s: typeof spec, tokens = true): FleetInputs => ({ spec: s, specHash: hash(s), ...(tokens ? { tokens: { ...es.tokens } } : {}) });

  /** What `fleet plan` makes of the same fleet on an empty record: members and data centers. */
  function planned(s: typeof spec, stack: FleetStack): { address: string; name: string; dataCenter: string }[] {
    const plan = computePlan({
      stack: es.stack,
      pack: es.pack,
      fleets: [{ ...s, labels: {}, minCount: 0, hardware: [], placement: { dataCenters: null, strategy: s.placement.strategy, near: null }, state: 'Running', protect: false, rollout: {}, specHash: hash(s), where: {}, pointers: new Map(), raw: {} as never }],
      record: [],
      fleetVersions: {},
      options: { targets: [s.name], excludes: [], allowDestroy: [], refresh: false },
      policy: noRulesPolicy,
    });
    expect(plan.stack).toBe(stack.name);
    return plan.changes.map((c) => ({ address: c.address, name: c.name, dataCenter: c.dataCenter }));
  }

  // Found by QA: each was accepted by check; a misspelt key was dropped without a word (encryptDisk: true made
  // unencrypted VMs), a name outside the fleet grammar made addresses no later call could parse, and a count in the
  // millions had the planner build a change per member in the host's memory.
  it.each([
    ['a misspelt key', { encryptDisk: true }, 'spec.encryptDisk', '"encryptDisk" is not a key of a fleet spec'],
    ['a name outside the fleet grammar', { name: 'Web/1' }, 'spec.name', 'lower-case letters, digits and dashes'],
    ['a count over the fleet file\'s limit', { count: 5_000_000 }, 'spec.count', 'count must be an integer from 0 to 100000'],
    ['a size over the limits', { size: { cpu: 1000, memoryGiB: 0.1, diskGiB: 10 } }, 'spec.size', 'cpu from 1 to 256'],
    ['a misspelt size key', { size: { cpu: 1, memoryGib: 2, diskGiB: 10 } }, 'spec.size', '"memoryGib" is not a key of size'],
    ['hardware that is not a list of names', { hardware: 'general' }, 'spec.hardware', 'hardware must be a list of trait names'],
    ['labels that are not strings', { labels: { env: 1 } }, 'spec.labels', 'labels must map names to strings'],
    ['encryptedDisk that is not a boolean', { encryptedDisk: 'yes' }, 'spec.encryptedDisk', 'encryptedDisk must be true or false'],
    ['a misspelt placement key', { placement: { stratgy: 'spread' } }, 'spec.placement', '"stratgy" is not a key of placement'],
  ])('check refuses %s with a failure on its property', async (_name, over, property, reason) => {
    const { host: h } = await host('fleet');
    const r = await h.ok<{ failures: { property: string; reason: string }[] }>('check', {}, fleetInputs({ ...spec, ...over } as typeof spec));
    expect(r.failures).toContainEqual({ property, reason: expect.stringContaining(reason) });
  });

  it('check leaves values not known in a preview (computed from another resource) to be judged once known', async () => {
    const { host: h } = await host('fleet');
    const unknown = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';
    const r = await h.ok<{ failures: unknown[] }>('check', {}, fleetInputs({ ...spec, name: unknown, count: unknown, size: unknown, encryptedDisk: unknown } as unknown as typeof spec));
    expect(r.failures).toEqual([]);
  });

  // The tokens' variables set in the program's environment, as a CI job running `pulumi up` has them: the providers read
  // them at call time (process.env), and serializing must not capture their values into the state.
  it('carries no token when the program runs with the token variables set', async () => {
    const fs = es.fleetStack;
    const env = Object.fromEntries(fs.dataCenters.map((d) => [d.tokenEnv, es.tokens[d.name]]));
    const withEnv = await serializeProviders({ dc: { kind: 'dc' as const, options: providerOptions(fs, 'miami') }, vm: { kind: 'vm' as const, options: providerOptions(fs, 'richmond') }, fleet: { kind: 'fleet' as const, stack: fs } }, env);
    for (const text of Object.values(withEnv)) {
      for (const t of Object.values(es.tokens)) expect(text).not.toContain(t);
    }
    // And the provider serialized so still finds its token in the host's environment at call time.
    const h = await ProviderHost.start(withEnv.dc, { [tokenEnv('miami')]: es.tokens.miami });
    hosts.push(h);
    const created = await h.ok<{ id: string; outs: VmOutputs }>('create', vm({ fleet: 'envtok', index: 0, desiredState: 'PoweredOff' }));
    await h.ok('delete', created.id, created.outs);
  }, 120_000);

  it('carries no token in its serialized text', async () => {
    const { text } = await host('fleet');
    for (const t of Object.values(es.tokens)) expect(text).not.toContain(t);
  });

  it('create expands the fleet as fleet plan does; update lowers count and resizes; delete removes every member', async () => {
    const { host: h } = await host('fleet');
    const ins = fleetInputs(spec);
    expect((await h.ok<{ failures: unknown[] }>('check', {}, ins)).failures).toEqual([]);
    const created = await h.ok<{ id: string; outs: FleetOutputs }>('create', ins);
    expect(created.id).toBe(`${es.stack.name}:web`);
    expect(created.outs.members.map((m) => ({ address: m.address, name: m.name, dataCenter: m.dataCenter }))).toEqual(planned(spec, es.fleetStack));
    expect(new Set(created.outs.members.map((m) => m.dataCenter))).toEqual(new Set(['miami', 'richmond']));
    expect(created.outs.members.map((m) => m.state)).toEqual(['Running', 'Running', 'Running']);
    for (const m of created.outs.members) expect((await es.record.getVm(m.vmId))?.state).toBe('Running');

    const smaller = { ...spec, count: 2, size: { cpu: 2, memoryGiB: 2, diskGiB: 10 } };
    const news = fleetInputs(smaller);
    expect(await h.ok('diff', created.id, created.outs, news)).toMatchObject({ changes: true, replaces: [] });
    const updated = await h.ok<{ outs: FleetOutputs }>('update', created.id, created.outs, news);
    expect(updated.outs.members.map((m) => [m.address, m.state, m.size.cpu])).toEqual([
      ['web/0', 'Running', 2],
      ['web/1', 'Running', 2],
    ]);
    expect(updated.outs.members.map((m) => m.vmId)).toEqual(created.outs.members.slice(0, 2).map((m) => m.vmId));
    expect((await es.record.getVm(created.outs.members[2].vmId))?.state).toBe('Deleted');

    const read = await h.ok<{ props: FleetOutputs }>('read', created.id, updated.outs);
    expect(read.props.members.map((m) => m.state)).toEqual(['Running', 'Running']);

    await h.ok('delete', created.id, updated.outs);
    for (const m of created.outs.members) expect((await es.record.getVm(m.vmId))?.state).toBe('Deleted');
  });

  // `pulumi import` (or a state that lost the outputs) calls read with no saved properties, or with only the host's
  // __provider: a Fleet's members are known only from what its create left, so read says so instead of answering `{ id }`,
  // which a later diff then failed on.
  it.each([
    ['no properties', () => []],
    ['only the provider Pulumi\'s host keeps', () => [{ __provider: 'serialized provider text' }]],
    ['the program\'s inputs and no members (the import option)', () => [{ ...fleetInputs(spec), __provider: 'serialized provider text' }]],
  ])('read with %s rejects saying a Fleet cannot be imported and what to do instead', async (_what, rest) => {
    const { host: h } = await host('fleet');
    const e = await h.rejected('read', `${es.stack.name}:web`, ...rest());
    expectActionable(e, 'apply.import-refused', /^Import refused: /, new RegExp(`Fleet ${es.stack.name}:web`), /pulumi up/, /fleet apply/);
  });

  it('a member gone from the cloud (found by a refresh) is a change: diff says so and update creates it again', async () => {
    const { host: h } = await host('fleet');
    const { host: dcHost } = await host('dc', { [tokenEnv('miami')]: es.tokens.miami, [tokenEnv('richmond')]: es.tokens.richmond });
    const ins = fleetInputs({ ...spec, name: 'drift', count: 2 });
    const created = await h.ok<{ id: string; outs: FleetOutputs }>('create', ins);
    const lost = created.outs.members.find((m) => m.dataCenter === 'miami')!;
    await dcHost.ok('delete', lost.vmId, lost);
    const read = await h.ok<{ props: FleetOutputs }>('read', created.id, created.outs);
    expect(read.props.members.map((m) => m.address)).not.toContain(lost.address);
    expect(await h.ok('diff', created.id, read.props, ins)).toMatchObject({ changes: true, replaces: [] });
    const updated = await h.ok<{ outs: FleetOutputs }>('update', created.id, read.props, ins);
    expect(updated.outs.members.map((m) => [m.address, m.state])).toEqual([
      ['drift/0', 'Running'],
      ['drift/1', 'Running'],
    ]);
    expect(await h.ok('diff', created.id, updated.outs, ins)).toMatchObject({ changes: false });
    // A destroy retried with outputs older than the record (one member deleted already) still ends with every member deleted.
    const first = updated.outs.members.find((m) => m.dataCenter === 'miami')!;
    await dcHost.ok('delete', first.vmId, first);
    await h.ok('delete', created.id, updated.outs);
    for (const m of updated.outs.members) expect((await es.record.getVm(m.vmId))?.state).toBe('Deleted');
  });

  it('a create the authority vetoes (a member address already live) rejects with the reason and leaves no member', async () => {
    // taken/1 exists already (made outside this fleet resource, by the same program: a VM of another manager would be
    // refused as a take-over first, fleet-provider.test.ts): the authority vetoes the member's create.
    const { host: dcHost } = await host('dc', { [tokenEnv('miami')]: es.tokens.miami });
    const other = await dcHost.ok<{ id: string; outs: VmOutputs }>('create', { ...vm({ fleet: 'taken', index: 1, desiredState: 'PoweredOff' }), managedBy: 'pulumi' });
    const { host: h } = await host('fleet');
    const e = await h.rejected('create', fleetInputs({ ...spec, name: 'taken', count: 2 }));
    expectActionable(e, 'apply.step-vetoed', /^Request vetoed by the authority: /, /address taken\/1 already has a live VM/);
    const live = (await es.record.listVms(es.stack.name)).filter((v) => v.fleet === 'taken');
    expect(live.map((v) => v.id)).toEqual([other.id]);
  });

  // Found by QA: when a member's create failed and deleting a member created beside it failed too, create threw a
  // plain error: Pulumi recorded no resource, and the VM left running was known to no state (a destroy could not reach it).
  it('a create whose clean-up fails answers the members still there as a partial resource (id and properties), so Pulumi keeps them', async () => {
    const { createServer, request } = await import('node:http');
    const miami = new URL(es.fleetStack.dataCenters.find((d) => d.name === 'miami')!.url);
    // Forwards to miami's DMZ client, but refuses the first step down from Running (the clean-up's), as a DMZ client that went away would.
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (body.includes('"to":"ShuttingDown"')) {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthorized', message: 'the bearer token is not valid here' } }));
          return;
        }
        const up = request({ host: miami.hostname, port: miami.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        up.end(body);
      });
    });
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
    try {
      const fs = es.fleetStack;
      const proxied: FleetStack = { ...fs, dataCenters: fs.dataCenters.map((d) => (d.name === 'miami' ? { ...d, url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` } : d)) };
      const { fleet: text } = await serializeProviders({ fleet: { kind: 'fleet' as const, stack: proxied } });
      const h = await ProviderHost.start(text);
      hosts.push(h);
      // richmond's member fails (a token richmond does not take); miami's is created, and its clean-up is refused.
      const e = await h.rejected('create', { ...fleetInputs({ ...spec, name: 'orphan', count: 2 }), tokens: { miami: es.tokens.miami, richmond: 'not-richmonds-token' } });
      expect(e.message).toMatch(/it still exists in miami/);
      expect(e.id).toBe(`${es.stack.name}:orphan`);
      const left = (e.properties as unknown as FleetOutputs).members;
      expect(left.map((m) => [m.dataCenter, m.state])).toEqual([['miami', 'Running']]);
      expect((await es.record.getVm(left[0].vmId))?.state).toBe('Running');
      expect(e.reasons?.length).toBeGreaterThan(0);
    } finally {
      proxy.closeAllConnections();
      await new Promise((ok) => proxy.close(ok));
    }
  }, 120_000);

  it('a member whose own create and clean-up failed is kept in the partial resource too', async () => {
    const proxy = await failingProxy(es.fleetStack.dataCenters.find((d) => d.name === 'miami')!.url, '"to":"Starting"');
    try {
      const fs = es.fleetStack;
      const proxied: FleetStack = { ...fs, retries: 0, dataCenters: fs.dataCenters.map((d) => (d.name === 'miami' ? { ...d, url: proxy.url } : d)) };
      const { fleet: text } = await serializeProviders({ fleet: { kind: 'fleet' as const, stack: proxied } });
      const h = await ProviderHost.start(text);
      hosts.push(h);
      const e = await h.rejected('create', fleetInputs({ ...spec, name: 'stuck-fleet', count: 2 }));
      expect(e.message).toMatch(/may still exist in miami/);
      expect(e.id).toBe(`${es.stack.name}:stuck-fleet`);
      const left = (e.properties as unknown as FleetOutputs).members;
      expect(left.map((m) => [m.address, m.dataCenter, m.state])).toEqual([['stuck-fleet/0', 'miami', 'PoweredOn']]);
      // richmond's member was created and deleted again.
      const live = (await es.record.listVms(es.stack.name)).filter((v) => v.fleet === 'stuck-fleet' && v.state !== 'Deleted');
      expect(live.map((v) => v.id)).toEqual([left[0].vmId]);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('against DMZ clients that are down, create rejects naming each client', async () => {
    const { host: h } = await host('fleet-down');
    const e = await h.rejected('create', fleetInputs({ ...spec, name: 'unreached' }));
    expectActionable(e, 'apply.dmz-unreachable', /^DMZ client unreachable: /, down, /data center (miami|richmond)/);
  });

  it('a token missing from the inputs and the environment is named', async () => {
    const { host: h } = await host('fleet');
    const e = await h.rejected('create', fleetInputs({ ...spec, name: 'tokenless', count: 1 }, false));
    expectActionable(e, 'apply.token-missing', /FLEET_CLI_TOKEN_(MIAMI|RICHMOND)/);
  });
});
