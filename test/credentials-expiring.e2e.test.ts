// What `fleet apply` gives a user whose data center's credentials are expiring: the real CLI (in-process), the
// authority and the DMZ client of sim data center miami as processes of their own (`fleet serve`, test/helpers/
// deployed.ts), a PostgreSQL record. The credentials reach the DMZ client with every approval (the authority's
// scoped token, for a cloud data center with its brokered session, the earliest expiry counting); here they come
// expiring because the DMZ client's host clock runs ahead of the authority's (test/fixtures/clock), as they would
// from an authority whose cloud session for the data center is not renewed: the sim, in the DMZ client's process,
// judges them by the same clock, as a cloud refuses a session that has expired.
//
// - Expired when they reach the DMZ client: before, each member's createVm was made and refused (driver.credentials),
//   the member failed with the hint to check the data center's role, and the record held its VM CreateFailed. Now no
//   cloud call starts: the step answers 503 credentials-expiring, the CLI sends it again until its retries run out,
//   and the member fails apply.credentials-expiring, naming the data center, both causes and what to do; nothing is
//   in the cloud or recorded past BeingCreated, and the re-run once the clock is right converges.
// - Within the 2-minute margin (30 s left), on a cloud failing every call with an error that may pass: each try
//   but the last answers 503 and is sent again, 4 tries in all over the sends; the member fails driver.transient
//   (CreateFailed), never driver.credentials, and the re-run once both are fixed converges.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { testPostgresUrl } from '../engine/record/testing.ts';
import type { ActualVm, StepResult } from '../protocol/index.ts';
import { runCli } from './helpers/cli.ts';
import { deployedStack, type Deployed } from './helpers/deployed.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pg = testPostgresUrl();
/** The authority's credentials live 10 minutes (engine/authority/authority.ts). */
const TTL_MS = 10 * 60_000;

describe.skipIf(!pg)('fleet apply when a data center\'s credentials are expiring (deployed authority and DMZ client)', () => {
  let d: Deployed;
  /** `fleet ARGS`; `budgetMs`: how long the CLI retries a step (FLEET_RETRY_BUDGET_MS). */
  const fleet = (args: string[], budgetMs?: number) =>
    runCli([...args, '--stack', d.dir], { cwd: REPO, env: { ...d.env, ...(budgetMs !== undefined ? { FLEET_RETRY_BUDGET_MS: String(budgetMs) } : {}) } });
  const world = async () => {
    const s = await openSession(d.dir, { cwd: REPO, env: d.env });
    try {
      const vms = await s.record.listVms(s.stack.name);
      const cloud: ActualVm[] = [];
      for (const [, p] of s.providers) cloud.push(...(await p.listVms()));
      return { states: Object.fromEntries(vms.map((v) => [v.address, v.state])), vms, cloud };
    } finally {
      await s.close();
    }
  };
  /** Every record VM is present once in the data center, in the record's state, and nothing else is. */
  const expectConverged = async (want: Record<string, string>) => {
    const w = await world();
    expect(w.states).toEqual(want);
    const present = w.cloud.filter((c) => c.status === 'present');
    expect(present).toHaveLength(w.vms.length);
    for (const vm of w.vms) expect(present.filter((c) => c.vmId === vm.id).map((c) => c.observedState)).toEqual([vm.state]);
    expect((await fleet(['plan', '--detailed-exitcode'])).code).toBe(0);
  };

  beforeAll(async () => {
    d = await deployedStack(pg!, '{ latencyMs: 1, bootMs: 1 }');
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
  });

  it('credentials expired when they reach the DMZ client: no cloud call, a diagnostic naming the data center and what to do; the re-run once renewed converges', async () => {
    // The DMZ client's clock a minute past the credentials' expiry when they are issued.
    await d.restartDmz('{ latencyMs: 1, bootMs: 1 }', { clockAheadMs: TTL_MS + 60_000 });
    await d.spec('exp', fleetYaml('exp', { count: 2 }));
    // A 3 s budget: the credentials never come fresh, so the CLI's retries run out (60 s by default).
    const failed = await fleet(['apply', '--yes'], 3_000);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('Apply failed: 0 VMs changed, 2 failed;');
    const said = failed.stderr;
    // Before: `driver.credentials` ("sim miami refuses createVm: credentials expired at …") and "The cloud refused
    // the credentials the authority brokered for the data center: check its role or principal".
    expect(said).not.toContain('refuses createVm');
    for (const address of ['exp/0', 'exp/1']) expect(said).toContain(`at ${address}\n  create stopped at BeingCreated -> PoweredOff in miami: Data center credentials expiring: POST `);
    expect(said).toContain('(DMZ client of data center miami) answered 503: createVm was not tried: the credentials the authority issued for data center miami had expired when they reached its DMZ client');
    expect(said).toContain("Either the authority's cloud credentials for miami are not being renewed (its broker: the data center's role or principal), or the clock of the DMZ client's host runs ahead of the authority's");
    expect(said).toContain("renew the authority's cloud credentials for the data center (its role or principal, docs/drivers/), or set the DMZ client host's clock right if it runs ahead of the authority's; then `fleet apply` again takes the member on");
    // Nothing half-applied: no VM in the cloud, the record where the steps before left it (no cloud call: BeingCreated).
    const w = await world();
    expect(w.states).toEqual({ 'exp/0': 'BeingCreated', 'exp/1': 'BeingCreated' });
    expect(w.cloud).toEqual([]);
    const plan = await fleet(['plan']);
    expect(plan.stdout).toContain('exp/0 transition in miami: continue from BeingCreated, where an earlier apply stopped');

    // Renewed (the clock set right): the re-run takes both members on from BeingCreated and converges.
    await d.restartDmz('{ latencyMs: 1, bootMs: 1 }');
    const r = await fleet(['apply', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    await expectConverged({ 'exp/0': 'Running', 'exp/1': 'Running' });
  }, 240_000);

  // After the test above: its members stay Running.
  it('credentials within the margin on a cloud that keeps failing: 4 tries in all over the sends, the member fails driver.transient; the re-run once fixed converges', async () => {
    // 30 s left by the DMZ client's clock when issued: a first try runs, a try again does not.
    await d.restartDmz('{ latencyMs: 1, bootMs: 1, errorRate: 1 }', { clockAheadMs: TTL_MS - 30_000 });
    await d.spec('flaky', fleetYaml('flaky', { count: 1 }));
    const failed = await fleet(['apply', '--yes']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('create stopped at BeingCreated -> PoweredOff in miami: Cloud operation failed: createVm failed in miami: sim miami: createVm failed with a simulated transient error (errorRate)');
    expect(failed.stderr).not.toContain('credentials expired');
    expect((await world()).states).toEqual({ 'exp/0': 'Running', 'exp/1': 'Running', 'flaky/0': 'CreateFailed' });
    const h = (await fleet(['history', 'flaky/0'])).stdout;
    expect(h).toMatch(/BeingCreated\s+CreateFailed\s+failed/);
    // The DMZ client's idempotency log: the step's first three sends each kept their tries (1, 2, 3), the fourth
    // stored its failure: 4 tries in all, as a step that never answered 503 gets.
    const flaky = (await world()).vms.find((v) => v.address === 'flaky/0')!;
    const log = (await readFile(join(d.servicesDir, '.fleet', 'sim', 'miami', 'requests.jsonl'), 'utf8')).split('\n').filter((l) => l !== '');
    const createKeys = new Set(log.map((l) => JSON.parse(l) as { key: string; result?: StepResult }).filter((e) => e.result?.operation === 'createVm' && e.result.vm?.id === flaky.id).map((e) => e.key));
    expect(createKeys.size).toBe(1);
    const lines = log.map((l) => JSON.parse(l) as { key: string; tries?: { made: number }; result?: StepResult }).filter((e) => createKeys.has(e.key));
    expect(lines.map((e) => e.tries?.made ?? e.result?.error?.code)).toEqual([1, 2, 3, 'driver.transient']);

    await d.restartDmz('{ latencyMs: 1, bootMs: 1 }');
    const r = await fleet(['apply', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    await expectConverged({ 'exp/0': 'Running', 'exp/1': 'Running', 'flaky/0': 'Running' });
  }, 240_000);
});
