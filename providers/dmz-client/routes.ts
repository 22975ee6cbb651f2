// The DMZ client's HTTP routes (docs/protocol.md): each parses its request
// (Fastify validates it against the route's schema), calls the step runner,
// the runs or the driver's reads, and answers with what they return; errors
// become their protocol answer (protocol/http.ts, errorAnswer).
import type { FastifyInstance } from 'fastify';
import { WireError, doc, streamAnswers, type Part } from '../../protocol/index.ts';
import type { BootAuthorizeRequest, BootAuthorizeResponse } from '../../protocol/index.ts';
import type { Driver, ScopedCredentials } from '../drivers/types.ts';
import type { BootRequest, CreateVmRequest, DeleteVmRequest, StepBatchRequest, TransitionRequest } from '../../protocol/index.ts';
import type { Runs } from './runs.ts';
import {
  actualVmSchema,
  bootBodySchema,
  bootResponseSchema,
  createBodySchema,
  deleteBodySchema,
  errorSchema,
  healthResponseSchema,
  listResponseSchema,
  stepErrors,
  stepBatchBodySchema,
  stepResultSchema,
  transitionBodySchema,
  vmIdParams,
} from '../../protocol/index.ts';
import type { StepRunner } from './step.ts';

export interface DmzRoutes {
  dataCenter: string;
  /** For its reads (refresh) and its kind. */
  driver: Driver;
  steps: StepRunner;
  runs: Runs;
  /** The authority's boot check (AuthorityClient.boot). */
  authority: { boot(body: BootAuthorizeRequest): Promise<BootAuthorizeResponse> };
  /** The service's OpenAPI document (createService). */
  openapi: () => unknown;
}

/** Registers every route of the DMZ client on `app`. */
export function registerRoutes(app: FastifyInstance, r: DmzRoutes): void {
  const { dataCenter: dc, driver, steps, runs, authority } = r;

  /** Reads use the DMZ client's own read-only credentials; only writes need the authority's. */
  const readCredentials = (): ScopedCredentials => ({
    dataCenter: dc,
    token: 'dmz-client-read-only',
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  });

  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({
    ok: true,
    service: 'dmz-client' as const,
    dataCenter: dc,
    driver: driver.kind,
  }));
  app.get('/openapi.json', { schema: doc('This document') }, async () => r.openapi());

  app.post<{ Body: CreateVmRequest }>(
    '/v1/vms',
    { schema: doc('Enter a new VM in the record, in the initial state', { body: createBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => steps.create(req.body),
  );

  app.post<{ Body: TransitionRequest; Params: { id: string } }>(
    '/v1/vms/:id/transitions',
    { schema: doc('Carry a VM along one lifecycle edge, or resize it', { params: vmIdParams, body: transitionBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => steps.transition(req.params.id, req.body),
  );

  app.delete<{ Body: DeleteVmRequest; Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('The last edge: delete the VM in the cloud, into the terminal state', { params: vmIdParams, body: deleteBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => steps.remove(req.params.id, req.body),
  );

  // Many steps in one request (docs/protocol.md, "Batches"): each answered
  // as its single route would answer it, one NDJSON line per step as soon as
  // it is done (so a quick step never waits for a slow one), in completion
  // order. Lines finishing in the same tick go out in one write.
  app.post<{ Body: StepBatchRequest }>(
    '/v1/batch',
    {
      schema: doc('Several create, transition and delete steps in one request; answers stream back as NDJSON lines { i, status, body }', {
        body: stepBatchBodySchema,
        response: { 400: errorSchema, 401: errorSchema },
      }),
    },
    (req, reply) =>
      streamAnswers(
        reply,
        req.body.steps.map((s) => (part: Part) => (s.op === 'run' ? runs.run(s, part) : steps.one(s))),
        (err) => app.log.error(err),
      ),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('What the cloud holds for a VM (for refresh)', { params: vmIdParams, response: { 200: actualVmSchema, 401: errorSchema, 404: errorSchema } }) },
    async (req) => {
      const vm = await driver.get(readCredentials(), { vmId: req.params.id, cloudId: null });
      if (!vm) throw new WireError('not-found', `data center ${dc} has no VM ${req.params.id}`);
      return vm;
    },
  );

  app.get('/v1/vms', { schema: doc('Every VM the cloud holds (for refresh)', { response: { 200: listResponseSchema, 401: errorSchema } }) }, async () => ({
    vms: await driver.list(readCredentials()),
  }));

  app.post<{ Body: BootRequest }>(
    '/v1/boot',
    { schema: doc('Boot endpoint: a booting VM asks for approval and its disk key', { body: bootBodySchema, response: { 200: bootResponseSchema, 400: errorSchema, 503: errorSchema } }) },
    async (req) => {
      // The authority checks a booting VM against the record's state: a
      // report of this VM still on its way (written behind, its boot edge
      // already running) goes first.
      await steps.reportOnItsWay(req.body.vmId);
      return authority.boot({ dataCenter: dc, ...req.body });
    },
  );
}
