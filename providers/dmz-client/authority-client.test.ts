import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ADVANCE_NEXT_MAX, BATCH_EDGES_MAX, BATCH_MAX, ProtocolError, batchEdges } from '../../protocol/index.ts';
import { startAuthority, type RunningService } from '../../engine/authority/server.ts';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { defaultPack } from '../testing.ts';
import type { AuthorizeRequest, BatchRequest, ReportRequest } from '../../protocol/index.ts';
import { AuthorityClient, CODES_RETRY_MS } from './authority-client.ts';

/** A scripted authority: `answer` gets each batch (and its number) and writes the reply. */
async function fakeAuthority(answer: (batch: BatchRequest, n: number, res: ServerResponse) => void): Promise<{ url: string; batches: BatchRequest[]; server: Server }> {
  const batches: BatchRequest[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      expect(req.url).toBe('/v1/batch');
      expect(req.headers.authorization).toBe('Bearer tok');
      const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BatchRequest;
      batches.push(batch);
      answer(batch, batches.length, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, batches, server };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};
const auth = (i: number): AuthorizeRequest => ({ dataCenter: 'miami', requestId: `r${i}`, planId: null, kind: 'transition', vmId: `vm-${i}`, from: 'A', to: 'B' });
const report = (i: number): ReportRequest => ({ dataCenter: 'miami', requestId: `r${i}`, planId: null, vmId: `vm-${i}`, from: 'A', to: 'B', outcome: 'ok' });
/** The authority's 200 answer: one NDJSON line { i, status, body } per call, here in reverse order (lines come as calls finish). */
const lines = (res: ServerResponse, results: { status: number; body: unknown }[]) => {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.end(results.map((r, i) => `${JSON.stringify({ i, ...r })}\n`).reverse().join(''));
};
/** Whether a call carries a failed report's error code (a report's, an advance's report's). */
const carries = (c: BatchRequest['calls'][number]) => (c.body as { code?: string }).code !== undefined || (c.body as { report?: { code?: string } }).report?.code !== undefined;
/** The 400 an authority older than ReportRequest.code answers a batch carrying codes (what the authority of 32e46fa said). */
const olderRefusal = (batch: BatchRequest) =>
  batch.calls
    .flatMap((c, i) => ((c.body as { code?: string }).code !== undefined ? [`body/calls/${i}/body`] : (c.body as { report?: { code?: string } }).report?.code !== undefined ? [`body/calls/${i}/body/report`] : []))
    .map((path) => `${path} must NOT have additional properties`)
    .join(', ');
const echo = (batch: BatchRequest) => batch.calls.map((c) => ({ status: 200, body: { echo: c.call, requestId: (c.body as { requestId?: string }).requestId } }));

describe('AuthorityClient: calls to the authority, batched', () => {
  it('sends the calls of one tick in one batch and answers each with its own result, in order', async () => {
    const a = await fakeAuthority((batch, _n, res) => lines(res, echo(batch)));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    const answers = await Promise.all([client.authorize(auth(1)), client.report(report(2)), client.authorize(auth(3))]);
    expect(answers).toEqual([
      { echo: 'authorize', requestId: 'r1' },
      { echo: 'report', requestId: 'r2' },
      { echo: 'authorize', requestId: 'r3' },
    ]);
    expect(a.batches).toHaveLength(1);
    expect(a.batches[0].calls.map((c) => c.call)).toEqual(['authorize', 'report', 'authorize']);
  });

  it('many calls in flight take a fraction of the requests', async () => {
    // Slow answers, so calls pile up while batches are on their way.
    const a = await fakeAuthority((batch, _n, res) => setTimeout(() => lines(res, echo(batch)), 20));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    const answers = await Promise.all(Array.from({ length: 500 }, (_, i) => client.authorize(auth(i))));
    expect(answers.map((x) => (x as unknown as { requestId: string }).requestId)).toEqual(Array.from({ length: 500 }, (_, i) => `r${i}`));
    expect(a.batches.length).toBeLessThanOrEqual(5);
    expect(Math.max(...a.batches.map((b) => b.calls.length))).toBeLessThanOrEqual(200);
  });

  it('a quick call is answered as soon as its line arrives, not when its whole batch is done', async () => {
    let finishSlow = () => {};
    const a = await fakeAuthority((batch, _n, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify({ i: 1, status: 200, body: { echo: 'quick' } })}\n`);
      finishSlow = () => res.end(`${JSON.stringify({ i: 0, status: 200, body: { echo: 'slow' } })}\n`);
      expect(batch.calls).toHaveLength(2);
    });
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    const slow = client.authorize(auth(0));
    const quick = await client.report(report(1));
    expect(quick).toEqual({ echo: 'quick' });
    finishSlow();
    expect(await slow).toEqual({ echo: 'slow' });
  });

  it('a call whose line never comes (the answer ended early) is sent again', async () => {
    const a = await fakeAuthority((batch, n, res) => {
      if (n === 1) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(`${JSON.stringify({ i: 0, status: 200, body: { echo: 'first' } })}\n`);
      } else lines(res, echo(batch));
    });
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    expect(await Promise.all([client.authorize(auth(1)), client.authorize(auth(2))])).toEqual([{ echo: 'first' }, { echo: 'authorize', requestId: 'r2' }]);
    expect(a.batches.map((b) => b.calls.length)).toEqual([2, 1]);
  });

  it('a call the authority refuses (4xx) fails alone with a 502 naming its route; the others get their answers', async () => {
    const a = await fakeAuthority((batch, _n, res) =>
      lines(
        res,
        batch.calls.map((c, i) =>
          i === 1 ? { status: 409, body: { error: { code: 'state-moved', message: 'VM web/1 is Running, not A' } } } : { status: 200, body: { ok: c.call } },
        ),
      ),
    );
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    const [first, second] = await Promise.allSettled([client.authorize(auth(1)), client.report(report(2))]);
    expect(first).toEqual({ status: 'fulfilled', value: { ok: 'authorize' } });
    expect(second.status).toBe('rejected');
    const err = (second as PromiseRejectedResult).reason as ProtocolError;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.statusCode).toBe(502);
    expect(err.code).toBe('state-moved');
    expect(err.message).toContain('/v1/reports answered 409: VM web/1 is Running, not A');
    expect(a.batches).toHaveLength(1);
  });

  it.each([
    ['the whole batch answered 503', (batch: BatchRequest, n: number, res: ServerResponse) => (n === 1 ? json(res, 503, { error: { code: 'record.unreachable', message: 'down' } }) : lines(res, echo(batch)))],
    ['the connection dropped', (batch: BatchRequest, n: number, res: ServerResponse) => (n === 1 ? res.socket?.destroy() : lines(res, echo(batch)))],
    [
      'one call answered 500 on its own',
      (batch: BatchRequest, n: number, res: ServerResponse) =>
        lines(res, batch.calls.map((c, i) => (n === 1 && i === 0 ? { status: 500, body: { error: { code: 'internal', message: 'oops' } } } : echo({ calls: [c] })[0]))),
    ],
  ])('sends a call again when %s, and answers it then', async (_name, answer) => {
    const a = await fakeAuthority(answer);
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    const answers = await Promise.all([client.authorize(auth(1)), client.authorize(auth(2))]);
    expect(answers).toEqual([
      { echo: 'authorize', requestId: 'r1' },
      { echo: 'authorize', requestId: 'r2' },
    ]);
    expect(a.batches).toHaveLength(2);
    // Calls answered the first time are not sent again.
    const resent = a.batches[1].calls.map((c) => (c.body as { requestId: string }).requestId);
    expect(resent).toEqual(_name === 'one call answered 500 on its own' ? ['r1'] : ['r1', 'r2']);
  });

  // A DMZ client upgraded before its authority: the older authority's schema has no ReportRequest.code, and refuses a
  // batch carrying one whole (400), with every other call in it. The batch goes again without codes, and so does every
  // call after it for CODES_RETRY_MS; a 400 for anything else still fails the batch's calls. The fake answers as the
  // authority of 32e46fa (the last without the field) did: Fastify names the bodies, not the property.
  it('an authority older than a failed report\'s code: the batch sent again without codes, and every call after it', async () => {
    const a = await fakeAuthority((batch, _n, res) => (batch.calls.some(carries) ? json(res, 400, { error: { code: 'bad-request', message: olderRefusal(batch) } }) : lines(res, echo(batch))));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    const failed = (i: number): ReportRequest => ({ ...report(i), from: 'Starting', to: 'Running', outcome: 'failed', detail: 'awaitReady failed in miami', code: 'driver.boot-denied' });
    const answers = await Promise.all([client.authorize(auth(1)), client.report(failed(2)), client.advance({ report: failed(3), next: [auth(4)] })]);
    expect(answers).toEqual([
      { echo: 'authorize', requestId: 'r1' },
      { echo: 'report', requestId: 'r2' },
      { echo: 'advance', requestId: undefined },
    ]);
    expect(a.batches.map((b) => b.calls.some(carries))).toEqual([true, false]);
    // The resent report is the same but for its code.
    const { code: _code, ...plain } = failed(2);
    expect(a.batches[1].calls[1].body).toEqual(plain);
    // From now on without codes: one batch.
    await client.report(failed(5));
    expect(a.batches.map((b) => b.calls.some(carries))).toEqual([true, false, false]);
    // CODES_RETRY_MS later codes are tried again (the authority may have been upgraded since): refused, sent again.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + CODES_RETRY_MS });
    try {
      await client.report(failed(7));
    } finally {
      vi.useRealTimers();
    }
    expect(a.batches.map((b) => b.calls.some(carries))).toEqual([true, false, false, true, false]);
    // A batch refused whole for anything else fails its calls, as before.
    const b = await fakeAuthority((_batch, _n, res) => json(res, 400, { error: { code: 'bad-request', message: 'body/calls/0/body/from must be string' } }));
    const other = new AuthorityClient('miami', b.url, 'tok', 5000, 1);
    const err = (await other.report(report(6)).catch((e: unknown) => e)) as ProtocolError;
    expect([err.statusCode, err.code]).toEqual([502, 'bad-request']);
    expect(b.batches).toHaveLength(1);
  });

  // Found in review: any 400 of a batch carrying a code turned codes off until the DMZ client restarted, so one
  // malformed call (or an authority refusing a code's value) silenced every later boot denial of the data center.
  it.each([
    ['a call malformed otherwise', (batch: BatchRequest) => batch.calls.map((_c, i) => `body/calls/${i}/body/from must be string,null`).join(', ')],
    ['a code the authority refuses for its value', () => 'body/calls/0/body/code must be equal to one of the allowed values'],
    ['another body with an unknown property', (batch: BatchRequest) => `body/calls/${batch.calls.findIndex((c) => !carries(c))}/body must NOT have additional properties`],
    ['an advance whose next edge has an unknown property', () => 'body/calls/0/body/next/0 must NOT have additional properties'],
  ])('a 400 for %s fails the batch\'s calls and leaves codes on', async (_name, refusal) => {
    const a = await fakeAuthority((batch, n, res) => (n === 1 ? json(res, 400, { error: { code: 'bad-request', message: refusal(batch) } }) : lines(res, echo(batch))));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    const failed: ReportRequest = { ...report(1), outcome: 'failed', detail: 'boot denied', code: 'driver.boot-denied' };
    const first = await Promise.allSettled([client.report(failed), client.advance({ report: { ...failed, requestId: 'r2' }, next: [auth(3)] }), client.authorize(auth(4))]);
    expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    await client.report({ ...failed, requestId: 'r5' });
    expect(a.batches.map((b) => b.calls.some(carries))).toEqual([true, true]);
  });

  it('an authority that stays away fails each call with 503 authority-unreachable after 4 sends', async () => {
    const a = await fakeAuthority((_batch, _n, res) => json(res, 503, { error: { code: 'record.unreachable', message: 'PostgreSQL is down' } }));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    const err = (await client.report(report(1)).catch((e: unknown) => e)) as ProtocolError;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.statusCode).toBe(503);
    expect(err.code).toBe('authority-unreachable');
    expect(err.message).toContain('The DMZ client of miami asked');
    expect(err.message).toContain('/v1/reports, which answered 503: PostgreSQL is down; whether it recorded the call is not known. Sent again with the same key, a call it recorded before its answer was lost is found done, not done twice.');
    expect(a.batches).toHaveLength(4);
  });

  it('an authority nobody listens at fails with 503 naming the connection error', async () => {
    const a = await fakeAuthority(() => {});
    await new Promise((r) => a.server.close(r));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
    const err = (await client.authorize(auth(1)).catch((e: unknown) => e)) as ProtocolError;
    expect(err.statusCode).toBe(503);
    expect(err.message).toContain('could not be reached (ECONNREFUSED)');
  });
});

describe('AuthorityClient.advance: a report or a create and the next authorizations in one call', () => {
  it('goes in the batch of its tick as call advance, and gets its own answer', async () => {
    const a = await fakeAuthority((batch, _n, res) => lines(res, echo(batch)));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    const [advanced, authorized] = await Promise.all([client.advance({ report: report(1), next: [auth(1)] }), client.authorize(auth(2))]);
    expect(advanced).toEqual({ echo: 'advance' });
    expect(authorized).toEqual({ echo: 'authorize', requestId: 'r2' });
    expect(a.batches).toHaveLength(1);
    expect(a.batches[0].calls).toEqual([
      { call: 'advance', body: { report: report(1), next: [auth(1)] } },
      { call: 'authorize', body: auth(2) },
    ]);
  });

  it('advances of long paths made in one tick go in batches of at most BATCH_EDGES_MAX edges, each answered', async () => {
    const a = await fakeAuthority((batch, _n, res) => lines(res, echo(batch)));
    const client = new AuthorityClient('miami', a.url, 'tok', 5000);
    // BATCH_MAX advances of 1 + ADVANCE_NEXT_MAX edges each: one batch of them would name 4,200 edges.
    const next = Array.from({ length: ADVANCE_NEXT_MAX }, (_, k) => auth(1000 + k));
    const answers = await Promise.all(Array.from({ length: BATCH_MAX }, (_, i) => client.advance({ report: report(i), next })));
    expect(answers).toEqual(Array.from({ length: BATCH_MAX }, () => ({ echo: 'advance' })));
    expect(a.batches.flatMap((b) => b.calls)).toHaveLength(BATCH_MAX);
    for (const b of a.batches) expect(batchEdges(b.calls)).toBeLessThanOrEqual(BATCH_EDGES_MAX);
    // Filled up to the bound, not split further: 95, 95 and 10 advances.
    const per = Math.floor(BATCH_EDGES_MAX / (ADVANCE_NEXT_MAX + 1));
    expect(a.batches.map((b) => b.calls.length)).toEqual([per, per, BATCH_MAX - 2 * per]);
  });

  describe('against a real authority', () => {
    let nextIndex = 0;
    let record: FleetRecord;
    let authority: RunningService;
    beforeAll(async () => {
      record = await openRecord('memory://');
      authority = await startAuthority({ record, pack: await defaultPack(), stackName: 'ac-test', dataCenters: [{ name: 'miami', token: 'tok' }] });
    });
    afterAll(async () => {
      await authority.close();
      await record.close();
    });

    /** Forwards each batch to the real authority; drops the answer of a batch `lose` picks after the authority has carried it out. */
    const relay = (lose: (batch: BatchRequest) => boolean) =>
      fakeAuthority(async (batch, _n, res) => {
        const answer = await fetch(`${authority.url}/v1/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer tok' },
          body: JSON.stringify(batch),
        });
        const text = await answer.text();
        if (lose(batch)) return res.socket?.destroy();
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
        res.end(text);
      });

    /** A VM in the record at Requested with Requested -> BeingCreated approved. */
    async function approved(client: AuthorityClient): Promise<AuthorizeRequest> {
      const vmId = randomUUID();
      const vm = { stack: 'ac-test', fleet: 'web', owner: 'o', index: nextIndex++, name: 'n', dataCenter: 'miami', image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, encryptedDisk: false, desiredState: 'Running', specHash: 'h' };
      await client.authorize({ dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId, from: null, vm });
      const edge: AuthorizeRequest = { dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'transition', vmId, from: 'Requested', to: 'BeingCreated' };
      expect((await client.authorize(edge)).decision).toBe('approved');
      return edge;
    }
    const okReport = (e: AuthorizeRequest): ReportRequest => ({ dataCenter: 'miami', requestId: e.requestId, planId: null, vmId: e.vmId, from: 'Requested', to: 'BeingCreated', outcome: 'ok' });
    const nextEdge = (e: AuthorizeRequest): AuthorizeRequest => ({ ...e, requestId: randomUUID(), from: 'BeingCreated', to: 'PoweredOff' });

    it('sent again after the authority carried it out (the answer was lost): the report answers already, next is decided', async () => {
      let lost = 0;
      const a = await relay((batch) => batch.calls[0].call === 'advance' && lost++ === 0);
      const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
      const edge = await approved(client);
      const next = nextEdge(edge);
      const res = await client.advance({ report: okReport(edge), next: [next] });
      expect(a.batches.map((b) => b.calls[0].call)).toEqual(['authorize', 'authorize', 'advance', 'advance']);
      expect(res.report).toMatchObject({ effect: 'already', vm: { state: 'BeingCreated' } });
      expect(res.next).toMatchObject([{ authorize: { decision: 'approved', operation: 'createVm' } }]);
      const vm = (await record.getVm(edge.vmId))!;
      expect(vm.state).toBe('BeingCreated');
      // The first send's intent row and the second's: each send's answer stands on its own.
      expect((await record.history('ac-test', vm.address)).filter((h) => h.requestId === next.requestId)).toHaveLength(2);
    });

    it('a create and its chain sent again after the authority carried them out: one VM, the none edge already passed, the last edge decided again', async () => {
      let lost = 0;
      const a = await relay((batch) => batch.calls[0].call === 'advance' && lost++ === 0);
      const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
      const vmId = randomUUID();
      const vm = { stack: 'ac-test', fleet: 'web', owner: 'o', index: nextIndex++, name: 'n', dataCenter: 'miami', image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, encryptedDisk: false, desiredState: 'Running', specHash: 'h' };
      const edge = (from: string, to: string): AuthorizeRequest => ({ dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'transition', vmId, from, to });
      const next = [edge('Requested', 'BeingCreated'), edge('BeingCreated', 'PoweredOff')];
      const res = await client.advance({ create: { dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId, from: null, vm }, next });
      expect(a.batches.map((b) => b.calls[0].call)).toEqual(['advance', 'advance']);
      expect(res.create).toMatchObject({ decision: 'modified', operation: 'insert' });
      expect(res.next).toMatchObject([
        { authorize: { decision: 'approved', operation: 'none' }, moved: { effect: 'already', vm: { state: 'BeingCreated' } } },
        { authorize: { decision: 'approved', operation: 'createVm' } },
      ]);
      const row = (await record.getVm(vmId))!;
      expect(row).toMatchObject({ state: 'BeingCreated', version: 2 });
      expect((await record.history('ac-test', row.address)).map((h) => [h.to, h.actor])).toEqual([
        ['Requested', 'authority'],
        ['BeingCreated', 'authority'],
        ['BeingCreated', 'dmz-client:miami'],
        ['PoweredOff', 'authority'],
        ['PoweredOff', 'authority'],
      ]);
    });

    // The defect the 400 tests above pin, end to end: one malformed call in a batch carrying a failed report's code.
    it('a malformed call in a batch with a failed report does not cost the later reports their code', async () => {
      const a = await relay(() => false);
      const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
      const edge = await approved(client);
      const failed: ReportRequest = { ...okReport(edge), outcome: 'failed', detail: 'no room', code: 'driver.capacity' };
      // In one tick: a call the authority's schema refuses (a number for a state), and the failed report.
      const malformed = { ...nextEdge(edge), from: 7 } as unknown as AuthorizeRequest;
      const first = await Promise.allSettled([client.authorize(malformed), client.report(failed)]);
      expect(first.map((r) => (r.status === 'rejected' ? (r.reason as ProtocolError).code : r.status))).toEqual(['bad-request', 'bad-request']);
      // The report sent again on its own: its code reaches the record.
      await client.report(failed);
      const vm = (await record.getVm(edge.vmId))!;
      const row = (await record.history('ac-test', vm.address)).find((h) => h.requestId === edge.requestId && h.outcome === 'failed');
      expect(row?.code).toBe('driver.capacity');
      expect(a.batches.map((b) => b.calls.some(carries))).toEqual([false, false, true, true]);
    });

    it('a report the authority refuses fails the call with a 502 naming /v1/advance and its code', async () => {
      const a = await relay(() => false);
      const client = new AuthorityClient('miami', a.url, 'tok', 5000, 1);
      const edge = await approved(client);
      const err = (await client.advance({ report: { ...okReport(edge), to: 'PoweredOff' }, next: [nextEdge(edge)] }).catch((e: unknown) => e)) as ProtocolError;
      expect(err).toBeInstanceOf(ProtocolError);
      expect([err.statusCode, err.code]).toEqual([502, 'report-mismatch']);
      expect(err.message).toContain('/v1/advance answered 409');
      expect((await record.getVm(edge.vmId))!.state).toBe('Requested');
    });
  });
});
