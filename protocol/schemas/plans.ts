// The authority's plan routes (CLI -> authority, docs/protocol.md, "CLI → authority: sealed plans"):
// a deployed stack's `fleet plan --out` has its plan sealed here, and its
// `fleet apply` registers the sealed plan here before any request; the
// authority then approves only requests of a registered plan, for the
// members it changes (engine/authority/plan-seals.ts). Called with the CLI's
// token at the authority (FLEET_AUTHORITY_TOKEN), never a data center's.
//
// The plan travels as an object the authority does not validate field by
// field: the seal is over its canonical content whatever its format version
// (engine/plan/integrity.ts); the authority reads only `id`, `stack`,
// `fleets`, `basis` and `changes` of it, and refuses a plan without them.
import { errorSchema, memberIndex, name } from './common.ts';

const planDocument = {
  type: 'object',
  description: 'The plan document (specs/schema/plan.schema.json), as `fleet plan --out` writes it.',
  required: ['id', 'stack', 'fleets', 'basis', 'changes'],
  properties: {
    id: name,
    stack: name,
    fleets: { type: 'array', items: name },
    basis: { type: 'object', required: ['fleets', 'vms'], properties: { fleets: { type: 'object', additionalProperties: { type: 'integer' } }, vms: { type: 'object', additionalProperties: { type: 'integer' } } } },
    changes: {
      type: 'array',
      items: {
        type: 'object',
        required: ['address', 'fleet', 'index', 'dataCenter', 'action'],
        properties: { address: name, fleet: name, index: memberIndex, dataCenter: name, action: name, vmId: name },
      },
    },
  },
} as const;

export const planSealSchema = {
  title: 'WirePlanSeal',
  description: 'A seal (the plan document\'s `seal`): HMAC-SHA256 over the stack id and the sha256 of the plan\'s canonical content.',
  type: 'object',
  additionalProperties: false,
  required: ['alg', 'stackId', 'keyId', 'digest', 'signature'],
  properties: {
    alg: { type: 'string', const: 'hmac-sha256' },
    stackId: name,
    keyId: name,
    digest: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    signature: { type: 'string', maxLength: 200 },
  },
} as const;

export const planSealBodySchema = {
  title: 'PlanSealRequest',
  type: 'object',
  additionalProperties: false,
  required: ['plan'],
  properties: { plan: { ...planDocument, description: 'The plan to seal; a `seal` it carries is ignored (left out of the content).' } },
} as const;

export const planSealResponseSchema = {
  title: 'PlanSealResponse',
  type: 'object',
  required: ['seal'],
  properties: { seal: planSealSchema },
} as const;

export const planRegisterBodySchema = {
  title: 'PlanRegisterRequest',
  type: 'object',
  additionalProperties: false,
  required: ['plan'],
  properties: { plan: { ...planDocument, description: 'The sealed plan about to be applied, exactly as sealed.' } },
} as const;

export const planRegisterResponseSchema = {
  title: 'PlanRegisterResponse',
  type: 'object',
  required: ['planId', 'digest', 'members'],
  properties: {
    planId: name,
    digest: { type: 'string' },
    members: { type: 'integer', minimum: 0, description: 'How many members the plan changes: the authority approves requests about these only, under this plan id.' },
  },
} as const;

export const adminCheckBodySchema = {
  title: 'AdminCheckRequest',
  description: 'POST /v1/plans/admin-check (the authority, the CLI\'s token), POST /v1/admin-check (the DMZ client, the CLI\'s token; it passes the body on unchanged to its authority\'s POST /v1/admin-check, a data center\'s token): `fleet apply` proves it holds the admin token before any change starts, when its plan overrides a protected fleet\'s deletion and the protect rule says `override: admin`. The token itself is never sent. Read-only: nothing is written.',
  type: 'object',
  additionalProperties: false,
  required: ['nonce', 'proof'],
  properties: {
    nonce: { type: 'string', minLength: 16, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$', description: 'Fresh random base64url, chosen by the CLI per check.' },
    proof: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'hex HMAC-SHA256 under the admin token of `admin-check`, the stack name and the nonce joined by newlines (protocol/hash.ts adminCheckProof).' },
  },
} as const;

export const adminCheckResponseSchema = {
  title: 'AdminCheckResponse',
  type: 'object',
  required: ['ok'],
  properties: { ok: { type: 'boolean', const: true } },
} as const;

export const planErrors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 409: errorSchema };
