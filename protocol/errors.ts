// The one registry of wire error codes: every `code` the authority and the
// DMZ client put in an error body `{ error: { code, message } }` or in a
// StepResult's `error`, and every reason class a decision refuses with (a
// veto, a boot denial). Code -> HTTP status -> doc sentence, like the
// diagnostic registry (engine/diags/codes) for what a CLI user sees; the two
// code spaces never mix (a diagnostic code is never sent as a wire code).
//
// The HTTP layer (protocol/http.ts errorAnswer) is the only place that turns
// a code into a status; the services throw WireError(code, message) or
// return { refusal: code }. protocol/errors.test.ts fails when a code is
// unused or missing from docs/protocol.md ("Wire errors", generated from
// this table by `npm run gen:docs`).
//
// If you add a code here, use it, run `npm run gen:docs`, and commit docs/protocol.md.

export interface WireErrorEntry {
  /**
   * The HTTP status of an answer with this code. 200 for a refusal a
   * decision answers in a 200 body (a vetoed authorize, a denied boot, a
   * failed step's `driver.<kind>`).
   */
  status: number;
  /** What it means and what the caller does; becomes docs/protocol.md. */
  doc: string;
}

/** The kinds of DriverError (providers/drivers/types.ts); a failed step's error code is `driver.<kind>`. */
export const DRIVER_ERROR_KINDS = ['credentials', 'capacity', 'not-found', 'invalid-state', 'transient', 'failed', 'boot-failed', 'boot-denied', 'timeout'] as const;
export type DriverErrorKind = (typeof DRIVER_ERROR_KINDS)[number];

const driverErrors = {
  'driver.credentials': { status: 200, doc: 'A failed step: the driver refused the credentials (another data center\'s, expired, or a scoped token the authority did not sign with this data center\'s key: the DMZ client and the authority must share the same FLEET_DMZ_TOKEN_<DC>). The authority issues fresh ones with the next approval: plan and apply again.' },
  'driver.capacity': { status: 200, doc: 'A failed step: the data center has no room for the VM. Free capacity, or place the fleet elsewhere.' },
  'driver.not-found': { status: 200, doc: 'A failed step: the cloud does not know the VM. `fleet refresh` brings the record in line with the cloud.' },
  'driver.invalid-state': { status: 200, doc: 'A failed step: the cloud\'s VM is not in a state that allows the operation. `fleet refresh`, then plan again.' },
  'driver.transient': { status: 200, doc: 'A failed step: the cloud kept failing with an error that may pass, after the DMZ client\'s retries. Apply again.' },
  'driver.failed': { status: 200, doc: 'A failed step: the cloud refused the operation; the message says why.' },
  'driver.boot-failed': { status: 200, doc: 'A failed step: the VM did not boot (its agent failed, or it stopped before its agent reported, with no denial of its boot token seen); the VM is kept, and the next `fleet apply` boots it again (docs/recovery.md, BootFailed); the record moves it to the failure state the pack has for it.' },
  'driver.boot-denied': { status: 200, doc: 'A failed step: the boot endpoint denied the VM\'s boot (the authority did not recognise it, or its token was used or stale), so its agent failed and the driver terminated (or deleted) it; a VM that powered itself off during its boot without a report the DMZ client could believe counts only when the DMZ client saw the boot endpoint deny a request carrying that boot\'s token (otherwise: driver.boot-failed, the VM kept). When the driver could not delete it (its credentials expired during the wait, the cloud refused or kept failing the delete), the message says it was not deleted yet and why: it stays powered off, and the next `fleet apply` deletes it and creates the member again (docs/recovery.md). The record moves it to the failure state the pack has for a failed boot; `fleet history ADDRESS` says why it was denied.' },
  'driver.timeout': { status: 200, doc: 'A failed step: the cloud call or the VM\'s boot did not finish in time.' },
} satisfies Record<`driver.${DriverErrorKind}`, WireErrorEntry>;

export const WIRE_ERRORS = {
  // --- both services: the HTTP layer ---
  'bad-request': { status: 400, doc: 'The request is not valid HTTP/1.1 (answered before any route, and the connection closed), or the body breaks the route\'s schema (an unknown property, a missing or malformed field, a NUL character in any field or path parameter, a create\'s owner with a character that does not show, a space at either end or letters not composed), a URL that does not decode or a path parameter over its length, or the route\'s own rule (an advance with both or neither of report and create; a resize without its size; an ok report with an error code). Nothing was done; fix the caller.' },
  unauthorized: { status: 401, doc: 'The bearer token is missing or not one this service knows. Nothing was done; send the token of the caller\'s role (CLI to DMZ client, data center to authority).' },
  'client-cert-required': { status: 401, doc: 'The service requires client certificates (`--client-ca`) and the caller presented none, or one its client CA did not sign (or expired). Only a DMZ client\'s boot endpoint (`/v1/boot`, `/v1/boot/status`) answers without one. Nothing was done; configure the caller\'s certificate (the stack\'s `auth.clientCert`).' },
  'not-found': { status: 404, doc: 'No such route (answered to a caller with a valid token; without one, any path but the open ones is 401 `unauthorized`), or (GET /v1/vms/:id) the data center\'s cloud does not know the VM.' },
  'headers-too-large': { status: 431, doc: 'The request\'s headers, its URL included, are over the services\' limit (Node\'s 16 KiB): answered before any route or token check, and the connection closed. Nothing was done; send a shorter URL or fewer, shorter headers.' },
  'request-timeout': { status: 408, doc: 'The request did not arrive whole (headers and body) within the services\' receipt bound (60 s): answered before any route, and the connection closed. Nothing was done; send the request again, whole.' },
  'too-large': { status: 413, doc: 'The body is over the services\' limit (1 MiB; the authority\'s plan routes, with the CLI\'s token: 128 MiB; the DMZ client\'s open boot routes: 64 KiB, BOOT_BODY_LIMIT). Send fewer steps or calls per batch.' },
  'unsupported-media-type': { status: 415, doc: 'The body is not JSON (`content-type: application/json`).' },
  internal: { status: 500, doc: 'A bug in the service; its log has the stack. The request may be retried with the same idempotency key.' },
  unavailable: { status: 503, doc: 'Something the service depends on failed (the record unreachable, its disk): the message names the diagnostic. Retried by the callers; nothing was decided.' },
  'version-conflict': { status: 409, doc: 'Another writer changed the VM\'s row in the record at the same time (a refresh, a second authority), three times over. Send the request again.' },
  // --- the authority: reports, advances and their decisions ---
  'unknown-vm': { status: 404, doc: 'A report, an advance or an edge about a VM the record does not know (a vetoed authorize says it in its reason; a denied boot only in the operator\'s record and log: the booting caller is told nothing, docs/protocol.md "Boot authorization").' },
  'wrong-data-center': { status: 403, doc: 'The request names another data center than the caller\'s token, or is about a VM that lives in another data center. A DMZ client acts only in its own data center.' },
  'request-reused': { status: 409, doc: 'An authorize (or an advance\'s create or next edge) names a request id the authority approved for another request of the caller\'s data center (another VM, edge, kind or size) whose report it still waits for (a request sent while another request under its id is being decided waits for that decision and is judged after it); with authority replicas, one the record holds for another request, claimed by either replica within the approvals\' lifetime, approved or not (docs/protocol.md, "Reports match approvals"). Nothing was decided or written, and that approval stands. A request id names one request: the DMZ client derives it from the step (its idempotency key and body), so only a caller that reuses one gets this.' },
  'report-mismatch': { status: 409, doc: 'A report does not match what its requestId was approved for (another VM, or another edge). The DMZ client reports exactly what it was approved to do.' },
  'report-unapproved': { status: 409, doc: 'A report names a requestId the authority never approved for this VM (neither remembered nor in the record\'s history as an intent row). Nothing changed: a report is taken only for an approved request, for the same VM, edge and operation.' },
  'report-repeated': { status: 409, doc: 'A report of a request whose report was taken already, and the VM is no longer where that report left it. Nothing changed: each approval is reported once.' },
  'report-superseded': { status: 409, doc: 'A report of an approval never reported, given before the VM moved along another approval (it has come back to the same state since), or approved ahead and dropped by another call about the VM before its intent row was written. Nothing changed: an approval is good only for the VM it was decided on; authorize the edge again.' },
  'report-cloud-id': { status: 409, doc: 'A report sets a cloud id on an edge that is not the create (`createVm`): only the create\'s report sets the VM\'s cloud id. Nothing changed.' },
  'report-size-mismatch': { status: 409, doc: 'A resize report names another size than the one the authority approved. Nothing changed: the DMZ client reports exactly the approved size.' },
  'not-an-edge': { status: 409, doc: 'The from -> to of a report or an authorize is not one edge of the pack\'s lifecycle: every state change passes exactly one edge.' },
  'state-moved': { status: 409, doc: 'The VM is not in the state the request assumes (its `from`): the record moved since the plan. Plan again.' },
  'vm-retired': { status: 200, doc: 'Vetoed: the VM is in a terminal state (deleted) already; nothing more can happen to it.' },
  'not-resizable': { status: 200, doc: 'Vetoed: a resize keeps the state and needs a powered-off VM (a state with a `powerOn` edge out of it).' },
  'wrong-stack': { status: 200, doc: 'Vetoed: the create names another stack than the one this authority serves.' },
  'no-image': { status: 200, doc: 'Vetoed: the pack\'s image catalog has no translation of the logical image for this data center.' },
  'replaced-not-live': { status: 200, doc: 'Vetoed: the VM a create-before-delete replace should depose is not live, or not at the same address in the same data center.' },
  fenced: { status: 200, doc: 'Vetoed: the request carries the fencing token of an apply whose fleet lock a newer apply has taken since (an apply killed while its runs were still queued or in flight). Nothing was done; the newer apply carries on (docs/recovery.md, "Fencing").' },
  locked: { status: 200, doc: 'Vetoed: the request carries no fencing token (it comes from outside any apply: a Pulumi program, a script calling a DMZ client) and an apply holds the fleet\'s lock now. Nothing was done; run it again once that apply has ended (docs/recovery.md, "Fencing").' },
  'over-quota': { status: 200, doc: 'Vetoed: the create (or resize) would take the owner past its mandatory owner-quota, counted over the record\'s live VMs in the transaction that records the intent, so concurrent applies never both get the last slot. Free quota or raise the limit; plan again.' },
  'over-capacity': { status: 200, doc: 'Vetoed: the create (or resize) would take the data center past its mandatory capacity (stack.yaml dataCenters[].capacity), counted like over-quota. Free capacity, place elsewhere, or raise it.' },
  'owner-mismatch': { status: 200, doc: 'Vetoed: the create names another owner for its fleet than the record holds. A fleet\'s owner is what the record holds (fleet apply writes it from the fleet\'s spec before any step); a create never changes it, so no request can move a fleet, and the quota its VMs use, to another owner. Nothing was written. Apply the fleet\'s spec, or name the recorded owner.' },
  'manager-mismatch': { status: 200, doc: 'Vetoed: the create comes from another manager than the one whose live VMs its fleet has (a Pulumi program\'s `Fleet` or `Vm` into a fleet of fleet files, `fleet apply` into a program\'s fleet, or two programs): one fleet has one manager (the record\'s `fleets.managed_by`), or each would plan the other\'s VMs away. Nothing was written. Give the fleet another name, or remove it from its manager first. Also an edge (transition, resize, delete) from `fleet apply` (a request with a fencing token) on a VM of a fleet a program manages: a saved plan made before the record knew its manager, or a crafted one; change it with its program.' },
  protected: { status: 200, doc: 'Vetoed: the edge commits a VM of a protected fleet (protected in the record: applied with protect: true) to deletion, and the request carries no override. Apply a plan made with --allow-destroy <fleet>.' },
  'override-refused': { status: 200, doc: 'Vetoed: the request carries an override the stack does not accept from this caller: the protect rule says `override: admin` and the override carries no proof made with the authority\'s admin token (FLEET_ADMIN_TOKEN). Nothing changed.' },
  'policy-veto': { status: 200, doc: 'Vetoed: a mandatory request-level rule (require-encrypted-disk with an empty match, or a pack rule with checkRequest) found the request breaks it; the reason names the rule. Fix the spec or the pack\'s settings.' },
  'address-taken': { status: 200, doc: 'Vetoed: the address already has a live VM. Plan again against the record.' },
  'cloud-id-mismatch': { status: 200, doc: 'Boot denied (in the record and the authority\'s log; the caller gets the generic denial): the booting VM\'s cloud id is not the one the record holds.' },
  'image-mismatch': { status: 200, doc: 'Boot denied (in the record and the authority\'s log; the caller gets the generic denial): the booting VM\'s image is not the real image the record holds.' },
  'not-booting': { status: 200, doc: 'Boot denied (in the record and the authority\'s log; the caller gets the generic denial): the VM is not in a state a `boot` edge leaves or enters.' },
  'boot-token-invalid': { status: 200, doc: 'Boot denied (in the record and the authority\'s log; the caller gets the generic denial): the boot token is judged first, so a token that is not one the authority issued for the VM is this whatever else the caller got wrong. It is neither the one issued with the VM\'s last approved `boot` edge nor the one that edge replaced unused, or was used already more than an hour ago (a repeat of an approved boot, the VM still booting, is answered again), or was issued for a boot the VM has left since (out of the booting states and back: only a new `boot` edge\'s token boots it).' },
  // --- the authority: sealed plans (CLI -> authority) ---
  'wrong-role': { status: 403, doc: 'The token is valid at the authority but not for this route: a data center\'s token opens only the DMZ client routes, the CLI\'s (FLEET_AUTHORITY_TOKEN) only the plan routes. Nothing was done.' },
  'plan-unsigned': { status: 400, doc: 'POST /v1/plans/register: the plan carries no seal. Only a plan sealed by this authority (`fleet plan --out` on a stack with an `authority` address) can be applied; plan again.' },
  'plan-foreign': { status: 409, doc: 'The plan was made for another stack (its name, or its stack id: two stacks may share a name), or sealed with a key this authority does not hold. Nothing was registered; plan again against this stack.' },
  'plan-tampered': { status: 409, doc: 'The plan\'s content does not match the digest it was sealed with, or the seal\'s signature does not verify under this authority\'s key (or a plan of the same id with other content is registered). Nothing was registered; never edit a saved plan.' },
  'plan-scope': { status: 409, doc: 'The plan has a change outside its scope: a fleet not in its `fleets` (so neither locked nor stale-checked), a change whose basis does not pin what it changes, or a `vmId` that is another member\'s VM. Nothing was sealed or registered.' },
  'admin-proof-refused': { status: 403, doc: 'POST /v1/plans/admin-check (the CLI\'s token), /v1/admin-check (a data center\'s token, for its DMZ client), and the DMZ client\'s POST /v1/admin-check (which passes on its authority\'s answer): the proof was not made with the admin token the authority holds (FLEET_ADMIN_TOKEN where it runs), or it holds none. Nothing was done or written; `fleet apply` stops before any change (apply.admin-token-invalid).' },
  'plan-unregistered': { status: 200, doc: 'Vetoed: this authority approves only requests of a plan registered with it (a deployed stack: its `fleet apply` registers the sealed plan first), and the request\'s plan id is none it registered. Nothing changed; apply through `fleet apply`.' },
  'plan-unlocked': { status: 200, doc: 'Vetoed: the request is of a registered plan, but the VM\'s fleet is not locked now by that plan\'s apply (its apply is over, or never started): a registered plan\'s requests are approved only while its `fleet apply` holds the fleets. Nothing changed; apply again.' },
  'outside-plan': { status: 200, doc: 'Vetoed: the request is about a VM or member its registered plan does not change (another address, another data center, or a VM the plan neither acts on nor creates). Nothing changed.' },
  // --- the DMZ client ---
  'idempotency-conflict': { status: 422, doc: 'The idempotency key was used before for a different request. Use a fresh key for a new request.' },
  'earlier-step-failed': { status: 409, doc: 'A step of a run was carried out but not reported (or, its approval ahead to be asked for again, not carried out), because the step before it failed or was refused. The next apply continues from the record.' },
  'earlier-step-unreported': { status: 503, doc: 'A step of a run was carried out but not reported yet (or, its approval ahead to be asked for again, not carried out), because the step before it could not be reported (the authority did not answer, or another 5xx or 429). Nothing of this step was recorded; the CLI sends the run again from that earlier step, and this one is carried out again (cloud calls are idempotent) and reported.' },
  'approval-ahead-lost': { status: 503, doc: 'A step of a run was carried out under an approval the authority had given ahead, and its report was refused because the authority no longer holds that approval (it restarted before the report of the step before wrote its intent, or another call about the VM dropped it). Nothing of this step was recorded; the CLI sends the run again from this step, which is authorized afresh, carried out again (cloud calls are idempotent) and reported, or vetoed.' },
  'credentials-expiring': { status: 503, doc: 'A step\'s cloud call failed with an error that may pass (transient, or throttled with a Retry-After) and was not tried again: its tries and the waits between them (a Retry-After is still waited out first) had left the credentials of its approval 2 minutes or less (CREDENTIALS_MARGIN_MS, providers/dmz-client/operations.ts), too little for a try. Or the credentials of its approval had expired by the DMZ client\'s clock when they reached it (the authority\'s cloud credentials for the data center not renewed, or the DMZ client\'s clock ahead of the authority\'s), and no call was started. Nothing of this step was reported or recorded; the CLI sends it (a run: from this step) again with the same key, and it is authorized afresh, with fresh credentials, and tried again with the tries it has left (kept in the DMZ client\'s idempotency log, across a restart; cloud calls are idempotent), or vetoed; its retries run out, the member fails apply.credentials-expiring. Before, that try ran, was refused as expired (driver.credentials), and the member failed.' },
  'authority-unreachable': { status: 503, doc: 'The DMZ client could not reach the authority (connection failure, silence, or 5xx) after 4 sends. The DMZ client carried nothing further out; whether the authority recorded the call (a report, say) before its answer was lost is not known: the CLI retries with the same key, and a call it recorded is found done, not done twice.' },
  'boot-rate-limited': { status: 429, doc: 'POST /v1/boot, /v1/boot/status: the caller\'s source address has had its budget of denials (denied boots, refused reports, malformed requests) within the DMZ client\'s window (its config\'s spec.bootLimit, default 30 in 30 s); its boot requests are refused until the time the message names (also in the `Retry-After` header, in seconds). Nothing was asked of the authority and nothing was written. The boot agent and the sim\'s agents ask again, as for a lost answer. Approvals are never counted: a healthy fleet never meets it.' },
  'admin-check-rate-limited': { status: 429, doc: 'The DMZ client\'s POST /v1/admin-check: the caller\'s source address had its budget of refused checks (ADMIN_CHECK_LIMIT in providers/dmz-client/boot-limit.ts: 5 in 60 s), so its checks are refused until the time the message names (also in `Retry-After`, in seconds), without asking the authority: the route is no cheaper a way to guess the admin token than the authority\'s own. Also the authority\'s POST /v1/admin-check: the calling data center had its budget of refused checks (AUTHORITY_ADMIN_CHECK_LIMIT in engine/authority/server.ts: 20 in 60 s, whatever addresses they came to its DMZ client from), so its checks are refused, the proof unchecked, until the time the message names (and `Retry-After`); the DMZ client passes that 429 on as it came, its message after `its authority says:`, and answers every check so itself (the seconds left in `Retry-After`), without asking the authority, until that `Retry-After` has passed. Also the authority\'s POST /v1/plans/admin-check: the CLI\'s token had its budget of refused checks there (the same 20 in 60 s, a budget of its own, whatever address they came from), so its checks are refused, the proof unchecked, until the time the message names (and `Retry-After`). A correct check is never counted. `fleet apply` stops at once, before any change, with the wait (apply.admin-check-limited): it never asks again within the window.' },
  'agent-report-refused': { status: 403, doc: 'POST /v1/boot/status: no VM of this data center is booting with that boot token (the driver believes only a report carrying the token it booted the VM with). Nothing changed.' },
  'credentials-unavailable': { status: 503, doc: 'The authority could not get the cloud credentials of the caller\'s data center (STS AssumeRole, or an Entra token, refused or unreachable, engine/authority/credentials). Nothing was approved; the DMZ client retries. Check the broker role and the authority\'s identity (docs/drivers/aws.md), or the azure principal and its secret (docs/drivers/azure.md).' },
  'authority-error': { status: 502, doc: 'The authority (or a gateway on the DMZ client\'s hop to it) refused a call without a code of this registry. A refusal with a code of this registry is relayed as 502 with that code, any other as `authority-error` with its message. The CLI answers POST /v1/admin-check\'s 502 with an error body of this registry at once, not retried; a gateway\'s 502 in front of the DMZ client, whatever its body, is retried.' },
  ...driverErrors,
} satisfies Record<string, WireErrorEntry>;

export type WireCode = keyof typeof WIRE_ERRORS;

/**
 * The wire code of `body` when it is an error body of ours: `{ error: { code, message } }` with a code of this
 * registry and a message; undefined for anything else (a gateway's or proxy's JSON, whatever shape or code it has).
 */
export function ownWireCode(body: unknown): WireCode | undefined {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null | undefined)?.error;
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error;
  return typeof code === 'string' && Object.hasOwn(WIRE_ERRORS, code) && typeof message === 'string' ? (code as WireCode) : undefined;
}

/** The code of a failed step's error. */
export function driverErrorCode(kind: DriverErrorKind): WireCode {
  return `driver.${kind}`;
}

/**
 * An error answer on the wire with its HTTP status: what the HTTP layer
 * sends. Built from a WireError, or (only the DMZ client's authority client)
 * to relay an authority's refusal as 502 with the authority's code.
 */
export class ProtocolError extends Error {
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.statusCode = statusCode;
    this.code = code;
  }
}

/** A refusal named by its wire code; its status is the registry's. What the services throw. */
export class WireError extends ProtocolError {
  declare readonly code: WireCode;
  constructor(code: WireCode, message: string) {
    super(WIRE_ERRORS[code].status, code, message);
    this.name = 'WireError';
  }
}

/** A decision's answer: allowed (with what it decided), or refused with a code and a sentence saying why. */
export type Decided<T = object> = ({ ok: true } & T) | Refusal;
export interface Refusal {
  ok: false;
  refusal: WireCode;
  reason: string;
}

export function refuse(refusal: WireCode, reason: string): Refusal {
  return { ok: false, refusal, reason };
}
