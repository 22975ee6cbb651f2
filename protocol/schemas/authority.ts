// The authority's routes (DMZ client -> authority, docs/protocol.md). Fastify
// validates requests and serializes responses with these schemas, the OpenAPI
// document is built from them, and ../types.ts is generated from them: if you
// add a field, add it here, run `npm run gen:types`, and say it in
// docs/protocol.md. Response schemas drop properties they do not list.
import { DRIVER_ERROR_KINDS } from '../errors.ts';
import { bootResponseSchema, credentialsSchema, decisionSchema, errorSchema, extend, fencingToken, name, nullableString, overrideSchema, sizeSchema, state, vmSpecSchema } from './common.ts';

export const authorizeVmSchema = extend('AuthorizeVm', 'The VM a create asks for, as the DMZ client forwards it (its data center added).', vmSpecSchema, {
  properties: { dataCenter: name },
  required: ['dataCenter'],
});

export const authorizeBodySchema = {
  title: 'AuthorizeRequest',
  type: 'object',
  additionalProperties: false,
  required: ['dataCenter', 'requestId', 'planId', 'kind', 'vmId', 'from'],
  properties: {
    dataCenter: name,
    requestId: {
      ...name,
      description:
        "The step's id at the authority, its report's too. The DMZ client makes it from its data center, the step's idempotency key and request (a UUID), so the same step sent again has the same id: the authority finds a step it recorded the report of done (`already`), with or without a plan id.",
    },
    planId: nullableString,
    kind: { title: 'AuthorizeKind', type: 'string', enum: ['create', 'transition', 'resize'] },
    vmId: name,
    from: { type: ['string', 'null'], maxLength: 100, description: 'null for a create (the VM does not exist yet).' },
    to: { ...state, description: "Required for a transition; for a create it may be left out (the pack's initial state)." },
    vm: authorizeVmSchema,
    size: { ...sizeSchema, description: 'New size, for a resize.' },
    fencingToken: { ...fencingToken, description: "The fencing token the CLI's request carried (the DMZ client passes it on)." },
    override: overrideSchema,
  },
} as const;

export const authorityVmSchema = {
  title: 'AuthorityVm',
  description: "The record's VM as the authority answers it.",
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

export const authorizeResponseSchema = {
  title: 'AuthorizeResponse',
  type: 'object',
  required: ['decision', 'reason', 'operation'],
  properties: {
    decision: decisionSchema,
    reason: { type: 'string', description: 'Always set, also on approval.' },
    operation: { type: 'string', description: 'Cloud operation of the edge (`none`: record only; `resize`; `insert` for a create).' },
    realImage: { type: 'string', description: 'The translated image for this data center.' },
    credentials: { ...credentialsSchema, description: 'Absent when vetoed.' },
    bootToken: { type: 'string', description: 'One-time token a VM presents at boot; issued with every approved `boot` edge.' },
    already: {
      type: 'boolean',
      description:
        'The edge was carried out and reported already by the same step (a step sent again after its answer was lost: a DMZ client restart, or the answer of its report lost on the way back), known by the plan id it carries or, without one, by its request id: nothing to do and nothing to report; the step is answered ok with the VM as the record has it.',
    },
    diskKeyHash: {
      type: 'string',
      description: 'sha256 (hex) of the disk key, issued with an approved `createVm` of an encrypted VM so the cloud can check the key later.',
    },
    vm: { ...authorityVmSchema, description: "The record's VM after the authorization (absent when the VM is unknown)." },
  },
} as const;

export const reportBodySchema = {
  title: 'ReportRequest',
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
    cloudId: { ...name, description: 'Set by a successful createVm.' },
    size: { ...sizeSchema, description: 'New size of a successful resize.' },
    detail: { type: 'string', maxLength: 2000 },
    code: {
      type: 'string',
      enum: DRIVER_ERROR_KINDS.map((k) => `driver.${k}`),
      description:
        "Only with outcome `failed`: the failed step's error code (`driver.<kind>`, docs/protocol.md \"Wire errors\"), kept with the VM's history row. `driver.boot-denied` of a boot's failure says the driver saw the VM's own agent denied: the next plan deletes and creates such a VM again instead of booting it again (docs/recovery.md). A DMZ client older than this field sends none; its failures count as not denied.",
    },
  },
} as const;

/** The detail of an ok report of an edge whose operation is `none` (no cloud call); a `none` edge an advance moves at once is written with it too. */
export const NONE_REPORT_DETAIL = 'record only';

export const reportResponseSchema = {
  title: 'ReportResponse',
  type: 'object',
  required: ['vm', 'effect'],
  properties: {
    vm: { ...authorityVmSchema, description: "The record's VM after the report." },
    effect: {
      type: 'string',
      enum: ['moved', 'failed', 'noted', 'already'],
      description: 'What the record did: `moved` along the edge, `failed` along a failure edge, `noted` a history row only, `already` (a repeated report).',
    },
    bootDenied: {
      type: 'boolean',
      description:
        "Only on a failure report whose `code` is `driver.boot-denied`, and only `true`: the record now counts the VM's latest boot as denied (FleetRecord.deniedBoots: this report's code and the authority's own denial of that boot, docs/record.md \"Denied boots\"), so the VM is not booted again. The DMZ client passes it on in the step's answer (StepResult.bootDenied). An authority older than the field never sends it.",
    },
  },
} as const;

/** Most edges in one advance (a path of `none` edges and the one after them; a pack's paths are short). */
export const ADVANCE_NEXT_MAX = 20;

export const advanceBodySchema = {
  title: 'AdvanceRequest',
  description:
    'What was just done to a VM and the authorization of its next edges, in one call (POST /v1/advance, docs/protocol.md "Advance"): answered as the report (or the create), then each edge\'s authorize and, for a `none` edge in the middle, its ok report would be answered one by one, with the same checks and history rows.',
  type: 'object',
  additionalProperties: false,
  required: ['next'],
  properties: {
    // Exactly one of report and create, a create only as `create` and never in
    // next: checked per call and answered 400 (in a batch, a schema refusal
    // would refuse the whole batch).
    report: { ...reportBodySchema, description: 'What was just done to the VM: the report of an edge ...' },
    create: { ...authorizeBodySchema, description: '... or its create (kind create), authorized (inserted) first. Exactly one of report and create.' },
    next: {
      type: 'array',
      minItems: 1,
      maxItems: ADVANCE_NEXT_MAX,
      items: authorizeBodySchema,
      description:
        "The VM's next edges in order (1..n; transitions or resizes, each from the state the one before leads to). Each but the last must be an edge whose operation is `none`: it is approved and moved at once. The last is authorized only, for the DMZ client to carry out.",
    },
    ahead: {
      type: 'boolean',
      description:
        'With `ahead`, `next` may go on past the edge to carry out: the edges after it are approved ahead, as far as they would be approved on the rows the edges before them leave (same checks). Their intent rows are written by the statement of the ok report of the edge before each; anything but that report (a failure, a refusal, another authorize or advance about the VM) drops the VM\'s approvals ahead.',
    },
  },
} as const;

export const advanceStepSchema = {
  title: 'AdvanceStep',
  description: 'One decided edge of an advance.',
  type: 'object',
  required: ['authorize'],
  properties: {
    authorize: authorizeResponseSchema,
    moved: { ...reportResponseSchema, description: 'Present when the edge (a `none` edge in the middle) was moved at once.' },
    ahead: { type: 'boolean', description: 'Approved ahead (AdvanceRequest.ahead): its intent row is written with the report of the edge before it.' },
  },
} as const;

export const advanceResponseSchema = {
  title: 'AdvanceResponse',
  type: 'object',
  required: ['next'],
  properties: {
    report: reportResponseSchema,
    create: authorizeResponseSchema,
    next: {
      type: 'array',
      items: advanceStepSchema,
      description:
        "As far as decided, in order: each edge's authorization, and for a `none` edge moved at once, its report answer. Stops after the first that is not approved/modified or not moved; empty when the report left the VM anywhere but next[0].from or the create was vetoed.",
    },
  },
} as const;

export const bootAuthorizeBodySchema = {
  title: 'BootAuthorizeRequest',
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

/**
 * The authority's answer to a boot check: the booting VM's answer, and for a denial the operator's reason, which
 * the DMZ client (an authenticated caller) takes off before it answers the VM at its open boot endpoint
 * (docs/protocol.md "Boot authorization"). If you add a field here, the DMZ client's /v1/boot must not pass it on
 * unless the VM may see it (providers/dmz-client/routes.ts).
 */
export const bootAuthorizeResponseSchema = extend(
  'BootAuthorizeResponse',
  "The authority's answer to a DMZ client's boot check: the VM's answer (BootResponse), and a denial's cause for the DMZ client only.",
  bootResponseSchema,
  {
    properties: {
      detail: {
        type: 'string',
        description:
          "A denial's cause (the VM's address and state, the record's cloud id or image, a used token), as the VM's history says it; only for a VM id that is not another data center's. The DMZ client never passes it to the booting VM: it puts it in the failed step's message of the VM it boots.",
      },
    },
    required: [],
  },
);

/** The calls a DMZ client may batch, by name, with the body schema of the single route each stands for. */
export const batchCalls = {
  authorize: authorizeBodySchema,
  report: reportBodySchema,
  advance: advanceBodySchema,
  boot: bootAuthorizeBodySchema,
} as const;

/** Most calls in one batch (bodies are small; the services' body limit is 1 MiB). */
export const BATCH_MAX = 200;

/**
 * Most edges in one batch, counted by batchEdges: the schema bounds the calls (BATCH_MAX) and an advance's edges
 * (1 + ADVANCE_NEXT_MAX), which would let one batch carry 4,200; the authority refuses a batch whose calls hold more
 * edges in all (400 `bad-request`, nothing decided or written). 10 edges a call on average: the DMZ client splits
 * its calls into batches under it (providers/dmz-client/authority-client.ts).
 */
export const BATCH_EDGES_MAX = 2000;

/** How many edges a call names: an advance its report or create and each of its next edges; any other call one. */
export function callEdges(c: { call: string; body: unknown }): number {
  return c.call === 'advance' ? 1 + ((c.body as { next?: readonly unknown[] }).next?.length ?? 0) : 1;
}

/** How many edges a batch's calls name (callEdges; at most BATCH_EDGES_MAX a request). */
export function batchEdges(calls: readonly { call: string; body: unknown }[]): number {
  let n = 0;
  for (const c of calls) n += callEdges(c);
  return n;
}

export const batchCallSchema = {
  title: 'BatchCall',
  description: 'One call in a batch: the body of the single route it stands for (/v1/authorize, /v1/reports, /v1/advance, /v1/boot/authorize).',
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
} as const;

export const batchBodySchema = {
  title: 'BatchRequest',
  type: 'object',
  additionalProperties: false,
  required: ['calls'],
  properties: {
    calls: { type: 'array', minItems: 1, maxItems: BATCH_MAX, items: batchCallSchema },
  },
} as const;

/** The error answers of the authority's routes (protocol/errors.ts says which code has which status). */
export const authorityErrors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema };
