// JSON Schemas of the DMZ client's routes (see providers/protocol.ts for the
// types and docs/protocol.md for the prose). Response schemas drop properties
// they do not list: if you add a field to a response type, add it here.
import { RUN_STEPS_MAX, STEP_BATCH_MAX } from '../protocol.ts';
import { authorizeVmSchema, errorSchema, decisionSchema, healthResponseSchema, sizeSchema } from '../../engine/authority/schemas.ts';

const { dataCenter: _dataCenter, ...vmSpecProperties } = authorizeVmSchema.properties;

const key = { type: 'string', minLength: 1, maxLength: 200 } as const;
const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
const state = { type: 'string', minLength: 1, maxLength: 100 } as const;
const planId = { type: ['string', 'null'], maxLength: 200 } as const;

export const vmIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 100 } },
} as const;

export const createBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'vm'],
  properties: {
    idempotencyKey: key,
    planId,
    vm: {
      type: 'object',
      additionalProperties: false,
      // The authority's create-VM schema, with the CLI's proposed id and without
      // dataCenter (the DMZ client adds its own): one definition, no drift.
      required: ['id', ...authorizeVmSchema.required.filter((k) => k !== 'dataCenter')],
      properties: {
        id: { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' },
        ...vmSpecProperties,
      },
    },
  },
} as const;

export const transitionBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'from', 'to'],
  properties: {
    idempotencyKey: key,
    planId,
    from: state,
    to: state,
    operation: { type: 'string', enum: ['resize'] },
    size: sizeSchema,
  },
} as const;

export const deleteBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'from'],
  properties: { idempotencyKey: key, planId, from: state, to: state },
} as const;

export const stepResultSchema = {
  type: 'object',
  required: ['requestId', 'decision', 'reason', 'outcome'],
  properties: {
    requestId: { type: 'string' },
    decision: decisionSchema,
    reason: { type: 'string' },
    outcome: { type: 'string', enum: ['ok', 'failed', 'vetoed'] },
    operation: { type: 'string' },
    vm: {
      type: 'object',
      required: ['id', 'address', 'state', 'cloudId', 'realImage', 'version'],
      properties: {
        id: { type: 'string' },
        address: { type: 'string' },
        state: { type: 'string' },
        cloudId: { type: ['string', 'null'] },
        realImage: { type: ['string', 'null'] },
        version: { type: 'integer' },
      },
    },
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;

export const actualVmSchema = {
  type: 'object',
  required: ['vmId', 'cloudId', 'dataCenter', 'name', 'image', 'size', 'encryptedDisk', 'status', 'power', 'agent', 'observedState'],
  properties: {
    vmId: { type: 'string' },
    cloudId: { type: 'string' },
    dataCenter: { type: 'string' },
    name: { type: 'string' },
    image: { type: 'string' },
    size: sizeSchema,
    encryptedDisk: { type: 'boolean' },
    status: { type: 'string', enum: ['present', 'terminated'] },
    power: { type: 'string', enum: ['on', 'off'] },
    agent: { type: 'string', enum: ['none', 'booting', 'ready', 'failed', 'stopping'] },
    observedState: { type: 'string' },
  },
} as const;

export const listResponseSchema = {
  type: 'object',
  required: ['vms'],
  properties: { vms: { type: 'array', items: actualVmSchema } },
} as const;

export const bootBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cloudId', 'vmId', 'image', 'bootToken'],
  properties: {
    cloudId: name,
    vmId: name,
    image: name,
    bootToken: { type: 'string', maxLength: 500 },
  },
} as const;

/** POST /v1/boot/status: a real VM's boot agent reports its state (providers/boot-agent). */
export const agentReportSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cloudId', 'vmId', 'bootToken', 'state'],
  properties: {
    cloudId: name,
    vmId: name,
    bootToken: { type: 'string', maxLength: 500 },
    state: { type: 'string', enum: ['booting', 'ready', 'failed'] },
    detail: { type: 'string', maxLength: 1000 },
    denied: { type: 'boolean' },
  },
} as const;

// A VM's boot answer is the authority's, passed through unchanged.
export { bootResponseSchema } from '../../engine/authority/schemas.ts';

export const stepErrors = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 422: errorSchema, 503: errorSchema };
export { errorSchema, healthResponseSchema };


// The discriminator makes ajv check a step's body against its own route's schema only.
const stepKinds = [
  {
    type: 'object',
    additionalProperties: false,
    required: ['op', 'body'],
    properties: { op: { type: 'string', enum: ['create'] }, body: createBodySchema },
  },
  {
    type: 'object',
    additionalProperties: false,
    required: ['op', 'vmId', 'body'],
    properties: { op: { type: 'string', enum: ['transition'] }, vmId: vmIdParams.properties.id, body: transitionBodySchema },
  },
  {
    type: 'object',
    additionalProperties: false,
    required: ['op', 'vmId', 'body'],
    properties: { op: { type: 'string', enum: ['delete'] }, vmId: vmIdParams.properties.id, body: deleteBodySchema },
  },
] as const;

const runSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'steps'],
  properties: {
    op: { type: 'string', enum: ['run'] },
    steps: {
      type: 'array',
      minItems: 1,
      maxItems: RUN_STEPS_MAX,
      items: { type: 'object', required: ['op'], discriminator: { propertyName: 'op' }, oneOf: stepKinds },
    },
    lane: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'width'],
      properties: { id: { type: 'string', minLength: 1, maxLength: 200 }, width: { type: 'integer', minimum: 1, maximum: 1000 } },
    },
  },
} as const;

export const stepBatchBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['steps'],
  properties: {
    steps: {
      type: 'array',
      minItems: 1,
      maxItems: STEP_BATCH_MAX,
      items: { type: 'object', required: ['op'], discriminator: { propertyName: 'op' }, oneOf: [...stepKinds, runSchema] },
    },
  },
} as const;
