// A Pulumi program's step whose answer a DMZ client crash lost: the Vm
// resource's provider called directly, as Pulumi's dynamic-provider host
// calls it (no plan id), against a real authority and a sim DMZ client,
// through a proxy that lets the step through, drops its answer, and makes
// the DMZ client crash after the authority recorded the step's report but
// before its idempotency log kept the answer (the log line is dropped and
// the client started again). The provider's HTTP client sends the step
// again with its key, as it does after a connection lost: the restarted DMZ
// client authorizes it afresh on the VM it moved itself.
//
// Before, the authority recognized such a step only under a plan id, so the
// program's update was vetoed ("the request assumes VM … is ShuttingDown but
// the record has it PoweredOff") and its destroy too ("is Deleted already"):
// a false veto in the VM's history, kept under the step's key, for work that
// succeeded. Now both finish.
import { createServer, request, type IncomingMessage } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lifecycleData, type VmOutputs } from '../provider.ts';
import { idempotencyLogFile } from '../dmz-client/idempotency.ts';
import { newVm, startTestWorld, type TestWorld } from '../testing.ts';
import { VmProvider, type VmResourceInputs, type VmResourceOutputs } from './vm.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startTestWorld({ dataCenters: ['miami'], sim: { bootMs: 5 } });
}, 120_000);
afterAll(async () => {
  await world?.close();
});

/**
 * A proxy in front of miami's DMZ client (wherever it listens now). Armed with `trigger`, the first request whose
 * body holds it is forwarded and answered by the DMZ client, but its answer is dropped (the connection cut) and the
 * DMZ client crashes as if before its log kept that answer; requests wait until it is up again.
 */
async function crashingProxy(): Promise<{ url: string; arm(trigger: string): void; crashes: () => number; close(): Promise<void> }> {
  let trigger: string | undefined;
  let crashes = 0;
  let up: Promise<void> = Promise.resolve();
  const crash = async (key: string) => {
    const dc = world.dc('miami');
    const log = idempotencyLogFile(dc.stateDir);
    const kept = (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '' && !l.includes(`"${key}"`));
    await writeFile(log, `${kept.join('\n')}\n`);
    await dc.restart();
    crashes++;
  };
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        await up;
        const body = Buffer.concat(chunks);
        const lose = trigger !== undefined && body.includes(trigger);
        if (lose) trigger = undefined;
        const to = new URL(world.dc('miami').dmz.url);
        const answer = await new Promise<{ r: IncomingMessage; text: Buffer }>((resolve, reject) => {
          const out = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
            const got: Buffer[] = [];
            r.on('data', (c: Buffer) => got.push(c));
            r.on('end', () => resolve({ r, text: Buffer.concat(got) }));
            r.on('error', reject);
          });
          out.on('error', reject);
          out.end(body);
        });
        if (lose) {
          // Answered and kept; the answer never reaches the caller, and the DMZ client loses it too.
          up = crash(String(req.headers['idempotency-key']));
          req.socket.destroy();
          return;
        }
        res.writeHead(answer.r.statusCode ?? 502, answer.r.headers).end(answer.text);
      })().catch(() => req.socket.destroy());
    });
  });
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    arm: (t) => (trigger = t),
    crashes: () => crashes,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise((ok) => proxy.close(ok));
    },
  };
}

function inputs(fleet: string, desiredState = 'Running'): VmResourceInputs {
  const { id: _id, ...vm } = newVm(world.stack, { fleet });
  return { ...vm, desiredState, planId: null, token: world.dc('miami').clientToken };
}

describe("a Pulumi program's step whose answer a DMZ client crash lost", () => {
  it.each([
    { call: 'update (Running -> PoweredOff)', trigger: '"from":"ShuttingDown"' },
    { call: 'delete (pulumi destroy)', trigger: '"from":"BeingDeleted"' },
  ])('$call: sent again with its key, it is answered done; no veto in the VM\'s history', async ({ call, trigger }) => {
    const proxy = await crashingProxy();
    try {
      const p = new VmProvider({ dataCenter: 'miami', url: proxy.url, tokenEnv: 'FLEET_CLI_TOKEN_UNUSED', lifecycle: lifecycleData(world.pack.lifecycle), retries: 4, timeoutMs: 30_000 });
      const fleet = call.startsWith('update') ? 'pulumi-up' : 'pulumi-down';
      const ins = inputs(fleet);
      const created = await p.create(ins);
      const outs = created.outs as VmResourceOutputs;
      expect(outs.state).toBe('Running');
      proxy.arm(trigger);
      if (call.startsWith('update')) {
        const updated = (await p.update(created.id, outs, inputs(fleet, 'PoweredOff'))).outs as VmOutputs;
        expect(updated.state).toBe('PoweredOff');
        expect((await world.record.getVm(created.id))?.state).toBe('PoweredOff');
      } else {
        await p.delete(created.id, outs);
        expect((await world.record.getVm(created.id))?.state).toBe('Deleted');
      }
      expect(proxy.crashes()).toBe(1);
      const history = await world.record.history(world.stack, `${fleet}/0`);
      expect(history.filter((h) => h.outcome === 'vetoed')).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});
