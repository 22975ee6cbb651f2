// The schemas Fastify validates the services' requests with (the authority's
// and the DMZ client's route bodies and path parameters), by name. Their
// validators are compiled once by `npm run gen:types` (specs/gen-validators.ts,
// into specs/validators/routes.js) with the options Fastify would compile them
// with (SERVICE_AJV_OPTIONS over @fastify/ajv-compiler's defaults), and
// createService (protocol/http.ts) hands Fastify those instead of compiling
// them at every start (about half a second of CPU per service, and of every
// embedded `fleet apply`). A route whose schema is not listed here still
// works: Fastify compiles it as before (test/route-validators.test.ts fails
// on any such route of the two services).
import { advanceBodySchema, authorizeBodySchema, batchBodySchema, bootAuthorizeBodySchema, reportBodySchema } from './authority.ts';
import { agentReportSchema, bootBodySchema, createBodySchema, deleteBodySchema, stepBatchBodySchema, transitionBodySchema, vmIdParams } from './dmz-client.ts';
import { adminCheckBodySchema, planRegisterBodySchema, planSealBodySchema } from './plans.ts';

/**
 * The ajv options of the services' request validation (over Fastify's
 * defaults): unknown properties are refused, not dropped; no type coercion;
 * every error reported; `discriminator` for the batch calls.
 */
export const SERVICE_AJV_OPTIONS = { removeAdditional: false, coerceTypes: false, allErrors: true, discriminator: true } as const;

/**
 * How many schema errors a route's validator collects before it stops
 * (specs/gen-validators.ts capErrors): the 400 names the first
 * SCHEMA_ERRORS_NAMED (protocol/http.ts) and says whether there were more,
 * so more were never read; finding them all cost up to a second of CPU for a
 * 1 MiB body of wrong items.
 */
export const SCHEMA_ERRORS_KEPT = 21;

export const ROUTE_SCHEMAS: Readonly<Record<string, object>> = {
  // the authority
  authorizeBody: authorizeBodySchema,
  reportBody: reportBodySchema,
  advanceBody: advanceBodySchema,
  bootAuthorizeBody: bootAuthorizeBodySchema,
  batchBody: batchBodySchema,
  planSealBody: planSealBodySchema,
  planRegisterBody: planRegisterBodySchema,
  adminCheckBody: adminCheckBodySchema,
  // the DMZ client
  vmIdParams,
  createBody: createBodySchema,
  transitionBody: transitionBodySchema,
  deleteBody: deleteBodySchema,
  stepBatchBody: stepBatchBodySchema,
  bootBody: bootBodySchema,
  agentReport: agentReportSchema,
};
