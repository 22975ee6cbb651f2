// The DMZ client's routes (CLI -> DMZ client, docs/protocol.md). Fastify
// validates requests and serializes responses with these schemas, the OpenAPI
// document is built from them, and ../types.ts is generated from them: if you
// add a field, add it here, run `npm run gen:types`, and say it in
// docs/protocol.md. Response schemas drop properties they do not list.
import { decisionSchema, errorDetailSchema, errorSchema, extend, typeAs, fencingToken, idempotencyKey, name, overrideSchema, planId, sizeSchema, state, vmSpecSchema } from './common.ts';

export const vmIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 100 } },
} as const;

export const newVmSchema = extend('NewVmRequest', 'What the CLI knows of a VM it asks to create; the DMZ client adds its own data center.', vmSpecSchema, {
  properties: {
    id: {
      type: 'string',
      pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
      description: 'UUID proposed by the CLI; retries and the record use the same id.',
    },
  },
  required: ['id'],
});

export const createBodySchema = {
  title: 'CreateVmRequest',
  description: "POST /v1/vms: the VM enters the pack's initial state in the record (no cloud call yet).",
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'vm'],
  properties: { idempotencyKey, planId, vm: newVmSchema, fencingToken },
} as const;

export const transitionBodySchema = {
  title: 'TransitionRequest',
  description: "POST /v1/vms/:id/transitions: exactly one edge of the lifecycle diagram. A resize is `{ from: 'PoweredOff', to: 'PoweredOff', operation: 'resize', size }`.",
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'from', 'to'],
  properties: {
    idempotencyKey,
    planId,
    fencingToken,
    from: state,
    to: state,
    operation: { type: 'string', enum: ['resize'] },
    size: sizeSchema,
    override: overrideSchema,
  },
} as const;

export const deleteBodySchema = {
  title: 'DeleteVmRequest',
  description: "DELETE /v1/vms/:id: the edge into the terminal state (from is the VM's current state, e.g. BeingDeleted).",
  type: 'object',
  additionalProperties: false,
  required: ['idempotencyKey', 'planId', 'from'],
  properties: { idempotencyKey, planId, fencingToken, from: state, to: { ...state, description: "The terminal state; defaults to the pack's first terminal state." }, override: overrideSchema },
} as const;

export const stepVmSchema = {
  title: 'StepVm',
  description: 'The VM as the record holds it after the step.',
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
} as const;

export const stepResultSchema = {
  title: 'StepResult',
  description:
    'Answer to every mutating call. A vetoed or failed step is a 200 with outcome `vetoed` / `failed`: the request was carried out as far as allowed, and a retry with the same idempotency key returns this same result.',
  type: 'object',
  required: ['requestId', 'decision', 'reason', 'outcome'],
  properties: {
    requestId: { type: 'string' },
    decision: decisionSchema,
    reason: { type: 'string', description: 'Always set: why the authority approved, modified or vetoed.' },
    outcome: { title: 'StepOutcome', type: 'string', enum: ['ok', 'failed', 'vetoed'] },
    operation: { type: 'string', description: 'Cloud operation the edge ran (`none` when only the record changed).' },
    vm: { ...stepVmSchema, description: 'Absent only when the authority vetoed a request about a VM it does not know.' },
    error: { ...errorDetailSchema, description: 'A failed step: `driver.<kind>` (protocol/errors.ts).' },
    bootDenied: {
      type: 'boolean',
      description:
        "Only on a failed boot (`driver.boot-denied`), and only `true`: the authority counts the VM's boot as denied, both its own denial and this failure (ReportResponse.bootDenied), so the VM is not to be booted again. A client that plans on its own (a Pulumi Vm or Fleet, docs/pulumi.md) deletes such a VM still in its failure state and creates it again; `fleet apply` reads the record instead. Absent from a DMZ client or authority older than the field: the VM is booted again.",
    },
  },
} as const;

export const actualVmSchema = {
  title: 'ActualVm',
  description: 'What the cloud says, independent of the record (for refresh).',
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
    status: {
      type: 'string',
      enum: ['present', 'terminated'],
      description: '`terminated` VMs are gone from the cloud (deleted, or killed after a denied boot).',
    },
    power: { title: 'PowerState', type: 'string', enum: ['on', 'off'] },
    agent: {
      title: 'ObservedAgent',
      type: 'string',
      enum: ['none', 'booting', 'ready', 'failed', 'stopping', 'unknown'],
      description:
        "The boot agent of the VM's current run, as this DMZ client's last report of it says (AgentState); `unknown`: the VM runs and this client holds no report of its agent's current run (it restarted without its state folder, another client booted it, or the VM was started again since the report it holds: a start from the cloud's console), so nothing here says its boot handshake completed (the aws and azure drivers; observedState is Running all the same).",
    },
    startedAt: {
      type: 'string',
      description:
        "When the VM's current run began, as its cloud says (EC2: launchTime, its last start; Azure: the time of the instance view's provisioning state, its last operation's end, a start or restart among them). Evidence that its boot completed the handshake (an agent report, an approved boot attempt) counts only from after it (fleet import). Absent when the cloud says nothing of it (the sim, whose agents are its own).",
    },
    fleet: {
      type: 'string',
      description: "The fleet the VM was created for, as its cloud tags name it (the sim: the address it was created with; EC2: fleet:fleet; Azure: fleet-address's fleet). Absent when its tags name none (a VM made before the tag, or not by fleet apply).",
    },
    address: {
      type: 'string',
      description: 'The member (`fleet/index`) the VM was created as, as its cloud tags name it (the sim: its address; EC2: fleet:address; Azure: fleet-address). Absent when its tags name none.',
    },
    observedState: {
      type: 'string',
      description: "The default pack's state this cloud state corresponds to (Deleted, PoweredOff, PoweredOn, Starting, Running, BootFailed, ShuttingDown; the azure driver also BeingCreated, BeingDeleted and CreateFailed, from ARM's provisioning state).",
    },
  },
} as const;

export const listResponseSchema = {
  title: 'ListVmsResponse',
  type: 'object',
  required: ['vms'],
  properties: { vms: { type: 'array', items: actualVmSchema } },
} as const;

export const bootBodySchema = {
  title: 'BootRequest',
  description: "POST /v1/boot, called by a booting VM's agent.",
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

/**
 * The largest body the DMZ client's open boot routes (POST /v1/boot,
 * /v1/boot/status) read; the services' 1 MiB elsewhere. The endpoint is open to
 * any address of the DMZ network, and a body of either route is a few hundred
 * bytes (at most ~23 KiB, every character of its longest fields \u-escaped):
 * a caller sending 1 MiB ones made the client parse and validate up to 1 MiB
 * each before its 400. Over it: 413 `too-large`, which counts against the
 * caller's boot limit as a malformed request does.
 */
export const BOOT_BODY_LIMIT = 64 * 1024;

export const agentReportSchema = {
  title: 'AgentReport',
  description:
    "POST /v1/boot/status: a real VM's boot agent (providers/boot-agent) reports its state, proven by the one-time boot token it booted with. Drivers whose VMs run the shipped agent (aws, azure) learn readiness from it.",
  type: 'object',
  additionalProperties: false,
  required: ['cloudId', 'vmId', 'bootToken', 'state'],
  properties: {
    cloudId: name,
    vmId: name,
    bootToken: { type: 'string', maxLength: 500 },
    state: { type: 'string', enum: ['booting', 'ready', 'failed'] },
    detail: { type: 'string', maxLength: 1000, description: 'Why it failed (never a secret).' },
    denied: { type: 'boolean', description: 'The boot endpoint denied the boot (the VM powers itself off; the driver terminates it).' },
  },
} as const;

export const agentReportAnswerSchema = {
  title: 'AgentReportAnswer',
  description: 'POST /v1/boot/status: the report was taken.',
  type: 'object',
  additionalProperties: false,
  required: ['ok'],
  properties: { ok: { const: true } },
} as const;

/**
 * Most steps in one POST /v1/batch, a run counting its steps (batchSteps):
 * the schema bounds the items (a run's steps too), and the DMZ client refuses
 * a batch whose items hold more steps in all (400 `bad-request`), which no
 * fleet apply sends (providers/client.ts).
 */
export const STEP_BATCH_MAX = 500;

/** How many steps a batch's items hold: a run counts its steps (at most STEP_BATCH_MAX a request). */
export function batchSteps(items: readonly { op: string; steps?: readonly unknown[] }[]): number {
  let n = 0;
  for (const item of items) n += item.op === 'run' && item.steps ? item.steps.length : 1;
  return n;
}

/** Most steps in one run. */
export const RUN_STEPS_MAX = 50;

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

export const batchStepSchema = {
  title: 'BatchStep',
  description: 'One step of a POST /v1/batch: the body of the single route it stands for, and the VM id of its path.',
  type: 'object',
  required: ['op'],
  discriminator: { propertyName: 'op' },
  oneOf: stepKinds,
} as const;

export const runLaneSchema = {
  title: 'RunLane',
  description:
    'The apply\'s lane (docs/protocol.md, "Lanes"): of the runs naming lane `id`, at most `width` do cloud work at once at this DMZ client; the others wait, approved, for a place. Without it the run starts at once.',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'width'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 200, description: 'One per apply (and DMZ client).' },
    width: { type: 'integer', minimum: 1, maximum: 1000, description: "The apply's --parallelism." },
  },
} as const;

export const batchRunSchema = {
  title: 'BatchRun',
  description:
    'A member\'s steps, sent at once (docs/protocol.md, "Runs"): the DMZ client carries them out in order, each exactly as its single request (same idempotency key, same answer), and stops at the first that is not ok. It answers each step as soon as it is done.',
  type: 'object',
  additionalProperties: false,
  required: ['op', 'steps'],
  properties: {
    op: { type: 'string', enum: ['run'] },
    steps: { type: 'array', minItems: 1, maxItems: RUN_STEPS_MAX, items: batchStepSchema },
    lane: runLaneSchema,
  },
} as const;

export const stepBatchBodySchema = {
  title: 'StepBatchRequest',
  description:
    'POST /v1/batch: answered with NDJSON lines (BatchAnswerLine) in the order things finish: one line `{ i, status, body }` per step, and for a run one line `{ i, k, status, body }` per step k it carried out, the last being its last step or the first not ok.',
  type: 'object',
  additionalProperties: false,
  required: ['steps'],
  properties: {
    steps: {
      type: 'array',
      minItems: 1,
      maxItems: STEP_BATCH_MAX,
      items: typeAs({ type: 'object', required: ['op'], discriminator: { propertyName: 'op' }, oneOf: [...stepKinds, batchRunSchema] } as const, '(BatchStep | BatchRun)'),
    },
  },
} as const;

/** The error answers of the DMZ client's step routes (protocol/errors.ts says which code has which status). */
export const stepErrors = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 422: errorSchema, 503: errorSchema };
