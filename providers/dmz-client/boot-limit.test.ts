// The boot endpoint's limit of denials per source address (boot-limit.ts):
// the decision from tables with an injected clock, then over real HTTP
// against a real authority, record and sim (providers/testing.ts). No test
// sleeps to decide an outcome: the clock is moved by hand.
import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { TO_RUNNING, createRequest, newVm, startTestWorld, walk, type TestWorld } from '../testing.ts';
import { AuthorityClient } from './authority-client.ts';
import { BOOT_LIMIT_DEFAULTS, BootLimiter, judge, type BootLimitSettings, type BootWindow } from './boot-limit.ts';

const S: BootLimitSettings = { denials: 3, windowMs: 1_000, maxAddresses: 100 };

/** A clock tests move by hand. */
function manualClock(start = 1_000_000): { now: () => number; t: number } {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('judge: one address\'s window at a time', () => {
  const w = (over: Partial<BootWindow> = {}): BootWindow => ({ start: 0, denials: 0, strict: false, refused: 0, ...over });
  it.each([
    { name: 'no window', win: undefined, now: 0, want: { limited: false } },
    { name: 'below the budget', win: w({ denials: 2 }), now: 500, want: { limited: false } },
    { name: 'at the budget', win: w({ denials: 3 }), now: 500, want: { limited: true, until: 1_000 } },
    { name: 'over the budget (charged in flight)', win: w({ denials: 5, strict: true }), now: 999, want: { limited: true, until: 1_000 } },
    { name: 'at the budget, window ended', win: w({ denials: 3 }), now: 1_000, want: { limited: false } },
  ])('$name: $want', ({ win, now, want }) => {
    expect(judge(win, now, S)).toEqual(want);
  });
});

describe('BootLimiter', () => {
  /** Sends `n` requests from `address`, each answered as a denial or not; what admit said of each. */
  function send(l: BootLimiter, address: string, n: number, denied: boolean): ('admitted' | 'limited')[] {
    const out: ('admitted' | 'limited')[] = [];
    for (let i = 0; i < n; i++) {
      const a = l.admit(address);
      if (!a.ok) {
        out.push('limited');
        continue;
      }
      out.push('admitted');
      l.settle(a.ticket, denied);
    }
    return out;
  }

  it('approvals are never counted: a thousand from one address, none limited, nothing held', () => {
    const l = new BootLimiter(S, manualClock().now);
    expect(send(l, '127.0.0.1', 1_000, false).every((x) => x === 'admitted')).toBe(true);
    expect(l.size).toBe(0);
  });

  it.each([
    { name: 'denials up to the budget', denials: 3, then: 'admitted' as const, wantAfter: 'limited' },
    { name: 'one denial under the budget', denials: 2, then: 'admitted' as const, wantAfter: 'admitted' },
  ])('$name: the next request is $wantAfter', ({ denials, wantAfter }) => {
    const l = new BootLimiter(S, manualClock().now);
    expect(send(l, '10.0.0.7', denials, true)).toEqual(Array(denials).fill('admitted'));
    expect(send(l, '10.0.0.7', 1, true)).toEqual([wantAfter]);
    // Another address is judged on its own.
    expect(send(l, '10.0.0.8', 1, true)).toEqual(['admitted']);
  });

  it('a limited address is refused until its window ends, with the time left; the first refusal of a window says so, once', () => {
    const c = manualClock();
    const l = new BootLimiter(S, c.now);
    const start = c.t;
    send(l, '10.0.0.7', 3, true);
    c.t += 400;
    const a = l.admit('10.0.0.7');
    const b = l.admit('10.0.0.7');
    expect(a).toEqual({ ok: false, until: start + 1_000, waitMs: 600, denials: 3, first: true });
    expect(b).toMatchObject({ ok: false, first: false });
    c.t = start + 1_000;
    expect(l.admit('10.0.0.7').ok).toBe(true);
  });

  it('malformed and refused requests (settled as denials) and denied boots count alike; nothing in flight counts in a plain window', () => {
    const l = new BootLimiter(S, manualClock().now);
    // Three requests in flight at once: all admitted (a plain window counts denials once answered) ...
    const tickets = [0, 1, 2, 3].map(() => l.admit('10.0.0.9'));
    expect(tickets.map((t) => t.ok)).toEqual([true, true, true, true]);
    for (const t of tickets) if (t.ok) l.settle(t.ticket, true);
    // ... and settled twice counts once.
    for (const t of tickets) if (t.ok) l.settle(t.ticket, true);
    expect(l.admit('10.0.0.9')).toMatchObject({ ok: false, denials: 4 });
  });

  it('the window after one that went over its budget is strict: requests in flight are charged, an approval refunds its charge', () => {
    const c = manualClock();
    const l = new BootLimiter(S, c.now);
    send(l, '10.0.0.7', 3, true);
    c.t += 1_000;
    const inFlight = [0, 1, 2].map(() => l.admit('10.0.0.7'));
    expect(inFlight.map((t) => t.ok)).toEqual([true, true, true]);
    // A burst of concurrent bad boots cannot overshoot the budget again.
    expect(l.admit('10.0.0.7').ok).toBe(false);
    // One answered approved: its charge is refunded, one more may go.
    const [first, second] = inFlight;
    if (!first.ok || !second.ok) throw new Error('bug');
    l.settle(first.ticket, false);
    expect(l.admit('10.0.0.7').ok).toBe(true);
    // One denied: charged already, counted once.
    l.settle(second.ticket, true);
    expect(l.admit('10.0.0.7')).toMatchObject({ ok: false, denials: 3 });
  });

  it.each([
    { name: 'straight after a window over budget', gap: 1_000, strict: true },
    { name: 'a whole window after it', gap: 2_000, strict: false },
    { name: 'after a window under budget', gap: 1_000, strict: false, denials: 2 },
  ])('$name: strict=$strict', ({ gap, strict, denials = 3 }) => {
    const c = manualClock();
    const l = new BootLimiter(S, c.now);
    send(l, '10.0.0.7', denials, true);
    c.t += gap;
    const burst = [0, 1, 2, 3].map(() => l.admit('10.0.0.7').ok);
    expect(burst).toEqual(strict ? [true, true, true, false] : [true, true, true, true]);
  });

  it('the table stays within maxAddresses however many addresses deny, the newest kept', () => {
    const c = manualClock();
    const l = new BootLimiter({ ...S, maxAddresses: 100 }, c.now);
    for (let i = 0; i < 10_000; i++) {
      send(l, `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, 1, true);
      expect(l.size).toBeLessThanOrEqual(100);
    }
    expect(l.size).toBe(100);
    // The last address's denials are still counted: it is limited after its budget.
    send(l, '10.0.39.15', 2, true);
    expect(l.admit('10.0.39.15').ok).toBe(false);
  });

  it('windows that ended a window ago or more leave the table as new ones open', () => {
    const c = manualClock();
    const l = new BootLimiter(S, c.now);
    for (let i = 0; i < 50; i++) send(l, `10.0.0.${i}`, 1, true);
    expect(l.size).toBe(50);
    c.t += 2_000;
    send(l, '10.0.1.1', 1, true);
    expect(l.size).toBe(1);
  });

  it('the defaults: a VM\'s boot agent asks again for longer than a window (12 tries, 5 s apart)', () => {
    expect(BOOT_LIMIT_DEFAULTS.windowMs).toBeLessThan(11 * 5_000);
    expect(BOOT_LIMIT_DEFAULTS.denials).toBeGreaterThanOrEqual(10);
  });

  it('the defaults are the ones the DmzClient schema documents (docs/formats.md)', async () => {
    const schema = JSON.parse(await readFile(new URL('../../specs/schema/dmz-client.schema.json', import.meta.url), 'utf8')) as {
      definitions: { bootLimit: { properties: Record<string, { description: string }> } };
    };
    const documented = Object.fromEntries(Object.entries(schema.definitions.bootLimit.properties).map(([k, p]) => [k, Number(/\(default (\d+)/.exec(p.description)?.[1])]));
    expect(documented).toEqual({ ...BOOT_LIMIT_DEFAULTS });
  });
});

describe('the boot endpoint over HTTP (real authority, record, sim)', () => {
  let record: FleetRecord;
  let world: TestWorld | undefined;
  beforeAll(async () => {
    record = await openRecord('memory://');
  });
  afterAll(async () => {
    await record.close();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await world?.close();
    world = undefined;
  });

  /** A VM walked to Running in miami (its boot approved, from 127.0.0.1) and what a boot of it looks like. */
  async function runningVm(w: TestWorld, index = 0) {
    const { client } = w.dc('miami');
    const vm = newVm(w.stack, { index });
    await client.createVm(createRequest(vm));
    const steps = await walk(client, vm.id, TO_RUNNING);
    expect(steps.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    const row = await w.record.getVm(vm.id);
    return { id: vm.id, body: { cloudId: row?.cloudId, vmId: vm.id, image: row?.realImage, bootToken: 'guessed' } };
  }

  const post = async (url: string, body: unknown) => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { approved?: boolean; error?: { code: string; message: string } } };
  };

  const limitedCount = async (w: TestWorld) => {
    const text = await w.dc('miami').dmz.metrics.registry.getSingleMetricAsString('fleet_boot_limited_total');
    return [...text.matchAll(/^fleet_boot_limited_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };

  // The abuse: anything on the fleet's subnet sent bad-token boots naming a known VM without end, each one an authority
  // call, a boot-attempt row and a history row. Before the limit all 300 reached the authority and wrote their rows.
  it('300 bad-token boots from one address: the budget\'s worth reach the authority and the record, the rest are refused 429 without either', async () => {
    const clock = manualClock(Date.now());
    world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { bootLimitClock: clock.now } });
    const { dmz } = world.dc('miami');
    const vm = await runningVm(world);
    const asked = vi.spyOn(AuthorityClient.prototype, 'boot');
    const answers = [];
    for (let i = 0; i < 300; i++) answers.push(await post(`${dmz.url}/v1/boot`, vm.body));
    const budget = BOOT_LIMIT_DEFAULTS.denials;
    expect(answers.slice(0, budget).every((a) => a.status === 200 && a.body.approved === false)).toBe(true);
    const refused = answers.slice(budget);
    expect(refused.every((a) => a.status === 429 && a.body.error?.code === 'boot-rate-limited')).toBe(true);
    expect(refused[0].retryAfter).toBe(String(BOOT_LIMIT_DEFAULTS.windowMs / 1000));
    expect(refused[0].body.error?.message).toContain(`until ${new Date(clock.t + BOOT_LIMIT_DEFAULTS.windowMs).toISOString()}`);
    expect(asked).toHaveBeenCalledTimes(budget);
    const denied = (await world.record.history(world.stack, 'web/0')).filter((h) => h.outcome === 'denied');
    expect(denied).toHaveLength(budget);
    expect((await world.record.listBootAttempts(vm.id)).filter((a) => !a.approved)).toHaveLength(budget);
    expect(await limitedCount(world)).toBe(300 - budget);
    // Once the window has passed the address is heard again (and, having gone over, strict).
    clock.t += BOOT_LIMIT_DEFAULTS.windowMs;
    expect((await post(`${dmz.url}/v1/boot`, vm.body)).body).toMatchObject({ approved: false });
    expect(asked).toHaveBeenCalledTimes(budget + 1);
  });

  it.each([
    { name: 'malformed boots (400)', route: '/v1/boot', body: (b: Record<string, unknown>) => ({ ...b, extra: 1 }), status: 400 },
    { name: 'refused status reports (403)', route: '/v1/boot/status', body: (b: Record<string, unknown>) => ({ cloudId: b.cloudId, vmId: b.vmId, bootToken: 'guessed', state: 'ready' }), status: 403 },
  ])('$name count as denials: once over the budget, a boot is refused 429 without asking the authority', async ({ route, body, status }) => {
    const clock = manualClock(Date.now());
    world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { bootLimitClock: clock.now, bootLimit: { denials: 5 } } });
    const { dmz } = world.dc('miami');
    const vm = await runningVm(world);
    const asked = vi.spyOn(AuthorityClient.prototype, 'boot');
    for (let i = 0; i < 5; i++) expect((await post(`${dmz.url}${route}`, body(vm.body))).status).toBe(status);
    expect(await post(`${dmz.url}/v1/boot`, vm.body)).toMatchObject({ status: 429, body: { error: { code: 'boot-rate-limited' } } });
    expect(await post(`${dmz.url}/v1/boot/status`, body(vm.body))).toMatchObject({ status: 429 });
    expect(asked).not.toHaveBeenCalled();
  });

  it('approved boots are never counted: VMs boot from 127.0.0.1 with the budget all but used, and the address is still not limited', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { bootLimit: { denials: 3 } } });
    const { dmz } = world.dc('miami');
    const first = await runningVm(world);
    for (let i = 0; i < 2; i++) expect((await post(`${dmz.url}/v1/boot`, first.body)).body.approved).toBe(false);
    // Six more boots approved from the same address (the sim's agents).
    for (let i = 1; i <= 6; i++) await runningVm(world, i);
    expect(await limitedCount(world)).toBe(0);
    expect((await post(`${dmz.url}/v1/boot`, first.body)).body.approved).toBe(false);
    expect((await post(`${dmz.url}/v1/boot`, first.body)).status).toBe(429);
  });

  it('a legitimate boot from a limited address is refused 429, asked again by the sim\'s agent, and approved once the window has passed', async () => {
    // The clock stands still until the VM's agent is refused once; from then on it reads a window later.
    const c = manualClock(Date.now());
    let armed = false;
    let refusedOnce = false;
    const now = () => {
      if (!armed) return c.t;
      if (!refusedOnce) {
        refusedOnce = true;
        return c.t;
      }
      return c.t + 1_000;
    };
    world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { bootLimitClock: now, bootLimit: { denials: 2, windowMs: 1_000 } } });
    const { dmz, client } = world.dc('miami');
    const first = await runningVm(world);
    for (let i = 0; i < 2; i++) expect((await post(`${dmz.url}/v1/boot`, first.body)).body.approved).toBe(false);
    const vm = newVm(world.stack, { index: 1 });
    await client.createVm(createRequest(vm));
    expect((await walk(client, vm.id, TO_RUNNING.slice(0, 4))).every((s) => s.outcome === 'ok')).toBe(true);
    armed = true;
    const steps = await walk(client, vm.id, ['PoweredOn', 'Starting', 'Running']);
    expect(steps.map((s) => [s.outcome, s.vm?.state])).toEqual([
      ['ok', 'Starting'],
      ['ok', 'Running'],
    ]);
    expect(refusedOnce).toBe(true);
    expect(await limitedCount(world)).toBe(1);
  });

  it('logs one line per address and window, with no token; the refused requests write no request line each', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = { level: 'info' as const, stream: { write: (text: string) => void lines.push(...text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)) } };
    const clock = manualClock(Date.now());
    world = await startTestWorld({ record, dataCenters: ['miami'], dmz: { logger, bootLimitClock: clock.now, bootLimit: { denials: 2 } } });
    const { dmz } = world.dc('miami');
    const vm = await runningVm(world);
    for (let i = 0; i < 10; i++) await post(`${dmz.url}/v1/boot`, vm.body);
    clock.t += BOOT_LIMIT_DEFAULTS.windowMs;
    for (let i = 0; i < 10; i++) await post(`${dmz.url}/v1/boot`, vm.body);
    await world.close();
    world = undefined;
    const limited = lines.filter((l) => l.msg === 'boot limited');
    expect(limited).toEqual([
      expect.objectContaining({ level: 40, dataCenter: 'miami', address: '127.0.0.1', route: '/v1/boot', denials: 2 }),
      expect.objectContaining({ level: 40, dataCenter: 'miami', address: '127.0.0.1', route: '/v1/boot', denials: 2 }),
    ]);
    expect(lines.filter((l) => l.msg === 'request' && l.status === 429)).toEqual([]);
    expect(JSON.stringify(lines)).not.toContain('guessed');
  });
});
