// JSON Schemas of the authority's routes. Fastify validates requests and
// serializes responses with them, and the OpenAPI document is built from them,
// so they are the single source of the wire format. Response schemas drop
// properties they do not list: if you add a field to ./protocol.ts, add it here.

export const sizeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cpu', 'memoryGiB', 'diskGiB'],
  properties: {
    cpu: { type: 'integer', minimum: 1 },
    memoryGiB: { type: 'number', exclusiveMinimum: 0 },
    diskGiB: { type: 'number', exclusiveMinimum: 0 },
  },
} as const;

export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;

export const decisionSchema = { type: 'string', enum: ['approved', 'modified', 'vetoed'] } as const;

const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
const state = { type: 'string', minLength: 1, maxLength: 100 } as const;
const nullableString = { type: ['string', 'null'] } as const;

export const authorityVmSchema = {
  type: 'object',
  required: ['id', 'address', 'name', 'size', 'dataCenter', 'state', 'cloudId', 'realImage', 'encryptedDisk', 'version'],
  properties: {
    id: { type: 'string' },
    address: { type: 'string' },
    name: { type: 'string' },
    size: sizeSchema,
    dataCenter: { type: 'string' },
    state: { type: 'string' },
    cloudId: nullableString,
    realImage: nullableString,
    encryptedDisk: { type: 'boolean' },
    version: { type: 'integer' },
  },
} as const;

export const authorizeVmSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['stack', 'fleet', 'owner', 'index', 'name', 'dataCenter', 'image', 'size', 'encryptedDisk', 'desiredState', 'specHash'],
  properties: {
    stack: name,
    fleet: name,
    owner: name,
    index: { type: 'integer', minimum: 0 },
    name,
    dataCenter: name,
    image: name,
    size: sizeSchema,
    encryptedDisk: { type: 'boolean' },
    desiredState: state,
    specHash: { type: 'string', maxLength: 200 },
    replaces: { type: 'string', maxLength: 64, description: 'Id of the live VM at the same address that this one replaces (create-before-delete): it is deposed when this one is inserted.' },
  },
} as const;

export const authorizeBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['dataCenter', 'requestId', 'planId', 'kind', 'vmId', 'from'],
  properties: {
    dataCenter: name,
    requestId: name,
    planId: nullableString,
    kind: { type: 'string', enum: ['create', 'transition', 'resize'] },
    vmId: name,
    from: { type: ['string', 'null'], maxLength: 100 },
    to: state,
    vm: authorizeVmSchema,
    size: sizeSchema,
  },
} as const;

export const credentialsSchema = {
  type: 'object',
  required: ['dataCenter', 'token', 'expiresAt'],
  properties: {
    dataCenter: { type: 'string' },
    token: { type: 'string' },
    expiresAt: { type: 'string' },
    aws: {
      type: 'object',
      required: ['accessKeyId', 'secretAccessKey', 'sessionToken', 'expiration'],
      properties: { accessKeyId: { type: 'string' }, secretAccessKey: { type: 'string' }, sessionToken: { type: 'string' }, expiration: { type: 'string' } },
    },
    azure: {
      type: 'object',
      required: ['accessToken', 'expiresOn', 'subscriptionId', 'resourceGroup'],
      properties: { accessToken: { type: 'string' }, expiresOn: { type: 'string' }, subscriptionId: { type: 'string' }, resourceGroup: { type: 'string' } },
    },
  },
} as const;

export const authorizeResponseSchema = {
  type: 'object',
  required: ['decision', 'reason', 'operation'],
  properties: {
    decision: decisionSchema,
    reason: { type: 'string' },
    operation: { type: 'string' },
    realImage: { type: 'string' },
    credentials: credentialsSchema,
    bootToken: { type: 'string' },
    diskKeyHash: { type: 'string' },
    vm: authorityVmSchema,
  },
} as const;

export const reportBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['dataCenter', 'requestId', 'planId', 'vmId', 'from', 'to', 'outcome'],
  properties: {
    dataCenter: name,
    requestId: name,
    planId: nullableString,
    vmId: name,
    from: state,
    to: state,
    outcome: { type: 'string', enum: ['ok', 'failed'] },
    cloudId: name,
    size: sizeSchema,
    detail: { type: 'string', maxLength: 2000 },
  },
} as const;

export const reportResponseSchema = {
  type: 'object',
  required: ['vm', 'effect'],
  properties: {
    vm: authorityVmSchema,
    effect: { type: 'string', enum: ['moved', 'failed', 'noted', 'already'] },
  },
} as const;

/** Most edges in one advance (a path of `none` edges and the one after them; a pack's paths are short). */
export const ADVANCE_NEXT_MAX = 20;

export const advanceBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['next'],
  properties: {
    // Exactly one of report and create, a create only as `create` and never in
    // next: checked per call and answered 400 (in a batch, a schema refusal
    // would refuse the whole batch).
    report: reportBodySchema,
    create: authorizeBodySchema,
    next: { type: 'array', minItems: 1, maxItems: ADVANCE_NEXT_MAX, items: authorizeBodySchema },
    ahead: { type: 'boolean', description: 'Also approve, ahead, the edges after the first one to carry out (their intent rows are written with the report of the edge before each)' },
  },
} as const;

export const advanceResponseSchema = {
  type: 'object',
  required: ['next'],
  properties: {
    report: reportResponseSchema,
    create: authorizeResponseSchema,
    next: {
      type: 'array',
      items: {
        type: 'object',
        required: ['authorize'],
        properties: { authorize: authorizeResponseSchema, moved: reportResponseSchema, ahead: { type: 'boolean' } },
      },
    },
  },
} as const;

export const bootAuthorizeBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['dataCenter', 'vmId', 'cloudId', 'image', 'bootToken'],
  properties: {
    dataCenter: name,
    vmId: name,
    cloudId: name,
    image: name,
    bootToken: { type: 'string', maxLength: 500 },
  },
} as const;

export const bootResponseSchema = {
  type: 'object',
  required: ['approved', 'reason'],
  properties: { approved: { type: 'boolean' }, reason: { type: 'string' }, diskKey: { type: 'string' } },
} as const;

export const healthResponseSchema = {
  type: 'object',
  required: ['ok', 'service'],
  properties: {
    ok: { type: 'boolean' },
    service: { type: 'string', enum: ['dmz-client', 'authority'] },
    dataCenter: { type: 'string' },
    driver: { type: 'string' },
  },
} as const;

/** The calls a DMZ client may batch, by name, with the body schema of the single route each stands for. */
export const batchCalls = {
  authorize: authorizeBodySchema,
  report: reportBodySchema,
  advance: advanceBodySchema,
  boot: bootAuthorizeBodySchema,
} as const;

/** Most calls in one batch (bodies are small; the services' body limit is 1 MiB). */
export const BATCH_MAX = 200;

export const batchBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['calls'],
  properties: {
    calls: {
      type: 'array',
      minItems: 1,
      maxItems: BATCH_MAX,
      items: {
        // The discriminator makes ajv check a call's body against its own route's schema only.
        type: 'object',
        required: ['call'],
        discriminator: { propertyName: 'call' },
        oneOf: Object.entries(batchCalls).map(([call, body]) => ({
          type: 'object',
          additionalProperties: false,
          required: ['call', 'body'],
          properties: { call: { type: 'string', enum: [call] }, body },
        })),
      },
    },
  },
} as const;
