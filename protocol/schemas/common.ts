// Schemas shared by both services' routes. A schema with a `title` becomes a
// named type in ../types.ts (`npm run gen:types`); a schema object used in
// several places is one type there.

/** Builds a schema of `base`'s properties and `extra` (both required lists); ../gen-types.ts turns it into `Base & { extra }`. */
export function extend<
  B extends { title: string; required: readonly string[]; properties: Record<string, unknown> },
  P extends Record<string, unknown>,
  R extends readonly (keyof P & string)[],
>(title: string, description: string, base: B, extra: { properties: P; required: R }) {
  const schema = {
    title,
    description,
    type: 'object',
    additionalProperties: false,
    required: [...extra.required, ...base.required] as unknown as [...R, ...B["required"]],
    properties: { ...extra.properties, ...base.properties } as P & B['properties'],
  } as const;
  EXTENDS.set(schema, { base, extra });
  return schema;
}

/** Schemas made by extend, with what they were made of (read by ../gen-types.ts). */
export const EXTENDS = new WeakMap<object, { base: object; extra: { properties: Record<string, unknown>; required: readonly string[] } }>();

/** Schemas whose TypeScript type is spelled by hand (a union of named types the schema flattens for ajv's discriminator). */
export const TS_TYPE = new WeakMap<object, string>();

/** `schema`, typed as `tsType` in ../types.ts. */
export function typeAs<S extends object>(schema: S, tsType: string): S {
  TS_TYPE.set(schema, tsType);
  return schema;
}

export const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
export const state = { type: 'string', minLength: 1, maxLength: 100 } as const;
export const nullableString = { type: ['string', 'null'] } as const;
export const planId = { type: ['string', 'null'], maxLength: 200 } as const;
export const idempotencyKey = { type: 'string', minLength: 1, maxLength: 200 } as const;
/** A member's index: at most the record's integer column holds (larger ones were a 500 from the record, not a 400). */
export const memberIndex = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
/**
 * A lock's fencing token: the record's bigint column (a sequence) holds it;
 * bounded at 2^53 - 1, past which a JSON number is not the integer it reads
 * as in JavaScript (the fence compares them), and far past any sequence value.
 */
export const fencingToken = {
  type: 'integer',
  minimum: 1,
  maximum: 9007199254740991,
  description:
    "The fencing token of the apply's fleet lock (docs/recovery.md, \"Fencing\"): the authority refuses the request (`fenced`) once a newer lock of the VM's fleet exists, so a killed apply's runs still in flight never act after the next apply took over. A request without one is refused (`locked`) while an apply holds the fleet.",
} as const;

export const sizeSchema = {
  title: 'VmSize',
  type: 'object',
  additionalProperties: false,
  required: ['cpu', 'memoryGiB', 'diskGiB'],
  properties: {
    cpu: { type: 'integer', minimum: 1 },
    memoryGiB: { type: 'number', exclusiveMinimum: 0 },
    diskGiB: { type: 'number', exclusiveMinimum: 0 },
  },
} as const;

export const errorDetailSchema = {
  title: 'WireErrorDetail',
  description: 'A wire error: `code` from the wire error registry (protocol/errors.ts, docs/protocol.md), `message` a sentence for people.',
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const;

export const errorSchema = {
  title: 'ErrorBody',
  description: 'Body of every non-2xx answer from the DMZ client and the authority.',
  type: 'object',
  required: ['error'],
  properties: { error: errorDetailSchema },
} as const;

export const decisionSchema = { title: 'Decision', type: 'string', enum: ['approved', 'modified', 'vetoed'] } as const;

/**
 * The VM a create asks for, as the fleet spec and the plan describe it; the
 * CLI adds the id it proposes (NewVmRequest), the DMZ client its data center
 * (AuthorizeVm). One definition: the two cannot drift.
 */
export const vmSpecSchema = {
  title: 'VmSpec',
  description: 'The VM a create asks for.',
  type: 'object',
  additionalProperties: false,
  required: ['stack', 'fleet', 'owner', 'index', 'name', 'image', 'size', 'encryptedDisk', 'desiredState', 'specHash'],
  properties: {
    stack: name,
    fleet: name,
    owner: name,
    index: memberIndex,
    name,
    image: { ...name, description: 'Logical image; the authority translates it for the data center.' },
    size: sizeSchema,
    encryptedDisk: { type: 'boolean' },
    desiredState: state,
    specHash: { type: 'string', maxLength: 200 },
    replaces: {
      type: 'string',
      maxLength: 64,
      description: 'Id of the live VM at the same address that this one replaces (create-before-delete): it is deposed when this one is inserted.',
    },
    managedBy: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      description: 'The program the create comes from, e.g. `pulumi:<project>/<stack>` (a Pulumi Fleet or Vm); left out by fleet apply. The record keeps it as the fleet\'s manager (fleets.managed_by) and refuses a create by another manager while the fleet has live VMs (manager-mismatch).',
    },
  },
} as const;

export const overrideSchema = {
  title: 'Override',
  description:
    "An override a person gave with the plan (`--allow-destroy <fleet>`), carried with each request of that fleet's deleting steps. The authority records who and why in the VM's history; the stack may accept it only with a proof made with the admin token (the protect rule's `override: admin`).",
  type: 'object',
  additionalProperties: false,
  required: ['allowDestroy', 'by', 'reason'],
  properties: {
    allowDestroy: { type: 'boolean', description: 'Deleting a member of a protected fleet is allowed.' },
    by: { ...name, description: 'Who gave it (the apply\'s actor, e.g. user@host or the CI identity).' },
    reason: { type: 'string', minLength: 1, maxLength: 500, description: 'Why: the plan and flag it came from.' },
    proof: {
      type: 'string',
      maxLength: 200,
      description: 'hex HMAC-SHA256 under the admin token of `allow-destroy`, the VM id, plan id, `by` and `reason` joined by newlines (protocol/hash.ts overrideProof). Required when the stack accepts overrides from admins only.',
    },
  },
} as const;

export const credentialsSchema = {
  title: 'ScopedCredentials',
  description: 'Short-lived, scoped to one data center; the driver refuses anything else.',
  type: 'object',
  required: ['dataCenter', 'token', 'expiresAt'],
  properties: {
    dataCenter: { type: 'string' },
    token: {
      type: 'string',
      description:
        'v1.<nonce>.<expiresAtMs>.<mac>: HMAC-SHA256 under the data center\'s credential key, derived from its DMZ client token (protocol/scoped-token.ts); the sim verifies it. A secret: never logged or stored.',
    },
    expiresAt: { type: 'string' },
    aws: {
      description: 'For an `aws` data center: STS session credentials the authority brokered for it (engine/authority/credentials/aws.ts). A secret: never logged or stored.',
      type: 'object',
      additionalProperties: false,
      required: ['accessKeyId', 'secretAccessKey', 'sessionToken', 'expiration'],
      properties: { accessKeyId: { type: 'string' }, secretAccessKey: { type: 'string' }, sessionToken: { type: 'string' }, expiration: { type: 'string' } },
    },
    azure: {
      description:
        'For an `azure` data center: an access token of the principal scoped to its resource group, which the authority brokered (engine/authority/credentials/azure.ts), with the subscription and resource group it is for. A secret: never logged or stored.',
      type: 'object',
      additionalProperties: false,
      required: ['accessToken', 'expiresOn', 'subscriptionId', 'resourceGroup'],
      properties: { accessToken: { type: 'string' }, expiresOn: { type: 'string' }, subscriptionId: { type: 'string' }, resourceGroup: { type: 'string' } },
    },
  },
} as const;

export const healthResponseSchema = {
  title: 'HealthResponse',
  type: 'object',
  required: ['ok', 'service'],
  properties: {
    ok: { type: 'boolean' },
    service: { type: 'string', enum: ['dmz-client', 'authority'] },
    dataCenter: { type: 'string' },
    driver: { type: 'string' },
  },
} as const;

export const bootResponseSchema = {
  title: 'BootResponse',
  description: "The answer to a booting VM: the authority's answer (BootAuthorizeResponse) without its `detail`, which the DMZ client takes off.",
  type: 'object',
  required: ['approved', 'reason'],
  properties: {
    approved: { type: 'boolean' },
    reason: { type: 'string' },
    diskKey: { type: 'string', description: 'Released only on approval, and only for an encrypted disk.' },
  },
} as const;

/** A line of the NDJSON answer to either service's POST /v1/batch (protocol/http.ts streamAnswers). */
export const batchAnswerLineSchema = {
  title: 'BatchAnswerLine',
  description: 'A line of the NDJSON answer to either service\'s POST /v1/batch: item `i` got what its single route would have answered.',
  type: 'object',
  additionalProperties: false,
  required: ['i', 'status', 'body'],
  properties: {
    i: { type: 'integer', minimum: 0 },
    k: { type: 'integer', minimum: 0, description: "For a run of steps (the DMZ client's batch): which of its steps this line answers." },
    status: { type: 'integer' },
    body: typeAs({ description: 'What the single route answered: its 200 body, or an ErrorBody.' }, 'unknown'),
  },
} as const;

/**
 * The 200 answer of either service's POST /v1/batch, for the OpenAPI document (a route's `response` lists its
 * successful answer beside its errors). The answer is written by streamAnswers on the hijacked reply, so
 * Fastify's serializer never sees it (nothing is dropped); the line schema lists every field it writes.
 */
export const batchAnswerResponse = {
  description:
    'NDJSON (application/x-ndjson), written as each call (step) finishes: one BatchAnswerLine a line, in completion order; an empty line is a keep-alive (after 15 s without a line) and is skipped.',
  content: { 'application/x-ndjson': { schema: batchAnswerLineSchema } },
} as const;
