import { defineCodes } from './types.ts';

// Diagnostic codes of engine/apply. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const applyCodes = defineCodes({
  // --- providers, DMZ client, authority (providers/, engine/authority/) ---
  'apply.dmz-unreachable': {
    summary: 'DMZ client unreachable',
    doc: 'The DMZ client of a data center did not answer (connection refused or dropped, or a timeout) after every retry. Check that the service runs at the address in stack.yaml and that the network lets the CLI reach it; the request can be retried safely, it carries the same idempotency key.',
    severity: 'error',
  },
  'apply.dmz-error': {
    summary: 'DMZ client failed',
    doc: 'The DMZ client answered with a server error (5xx) or kept asking to slow down (429) after every retry. Its log tells why; the request can be retried safely with the same idempotency key.',
    severity: 'error',
  },
  'apply.credentials-expiring': {
    summary: 'Data center credentials expiring',
    doc: 'The DMZ client of a data center kept answering a step 503 `credentials-expiring` until the step\'s retries ran out (FLEET_RETRY_BUDGET_MS, 60 s): the credentials the authority issued for the data center had expired when they reached the DMZ client, or had too little time left for a try again of a cloud call that failed with an error that may pass. Asked for afresh at every send, they never came fresh: the authority\'s cloud credentials for the data center are not being renewed (its broker: the data center\'s role or principal, docs/drivers/), or the DMZ client\'s host clock runs ahead of the authority\'s. Nothing of the step was carried out or recorded; once the credentials are renewed or the clock is right, `fleet apply` again takes the member on from where the record holds it (docs/recovery.md).',
    severity: 'error',
  },
  'apply.dmz-unauthorized': {
    summary: 'DMZ client refused the token',
    doc: 'The DMZ client answered 401: the bearer token is missing or wrong. Set the environment variable named by the data center\'s auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>) to the token the DMZ client was started with (its own FLEET_CLI_TOKEN_<DC>, or the variable its stack names).',
    severity: 'error',
  },
  'apply.dmz-rejected': {
    summary: 'DMZ client rejected the request',
    doc: 'The DMZ client answered with a client error (4xx other than 401 and 429): the request was malformed, or an idempotency key was reused for a different request. Retrying the same request will not help.',
    severity: 'error',
  },
  'apply.token-missing': {
    summary: 'Data center token not set',
    doc: 'The environment variable that should hold a bearer token is not set or empty. For the CLI it is the token of a data center\'s DMZ client: the variable named by its auth.tokenEnv in stack.yaml, else FLEET_CLI_TOKEN_<DC> (the name upper-cased, other characters `_`); `fleet apply` checks it for every data center its plan changes before any member starts. For the services it is FLEET_DMZ_TOKEN_<DC> (a DMZ client\'s token at the authority) and the DMZ client\'s FLEET_CLI_TOKEN_<DC>. docs/security.md lists every token.',
    severity: 'error',
  },
  'apply.token-invalid': {
    summary: 'Token cannot be sent',
    doc: 'The variable holding the CLI\'s bearer token for a data center\'s DMZ client, or for the stack\'s authority, holds a character an HTTP header cannot carry (a control character such as the carriage return of a file saved with Windows line ends, a line break, or a character past U+00FF); the detail names the variable and the character\'s position, never the token. `fleet apply` checks it for every data center its plan changes before any member starts; a request is never sent with it. `fleet serve` refuses to start with such a token of its own (FLEET_DMZ_TOKEN_<DC>, the DMZ client\'s client token, the authority\'s plan token). Set the variable to the token alone.',
    severity: 'error',
  },
  'apply.admin-token-missing': {
    summary: 'Admin token not set',
    doc: 'The plan deletes or replaces members of protected fleets under --allow-destroy, and the stack\'s protect rule says `override: admin`: the authority accepts each such deletion only with a proof made with the admin token, and FLEET_ADMIN_TOKEN is not set. `fleet apply` checks it before any member starts (it used to apply the rest and have the deletions vetoed, `override-refused`). Set FLEET_ADMIN_TOKEN, or apply without --allow-destroy.',
    severity: 'error',
  },
  'apply.admin-token-invalid': {
    summary: 'Admin token refused by the authority',
    doc: 'The plan deletes or replaces members of protected fleets under --allow-destroy, the stack\'s protect rule says `override: admin`, and the deployed authority refused FLEET_ADMIN_TOKEN: `fleet apply` has it check a proof made with the token (read-only; the token itself is never sent) before any member starts, at the authority stack.yaml names (`authority`: POST /v1/plans/admin-check) or, when it names none, through the DMZ client of each data center with an overridden deletion (POST /v1/admin-check, which that DMZ client passes on to its authority). It used to apply the plan\'s other changes and have the deletions vetoed (`override-refused`). Set FLEET_ADMIN_TOKEN to the admin token the authority runs with, or apply without --allow-destroy.',
    severity: 'error',
  },
  'apply.admin-token-unverifiable': {
    summary: 'Admin token cannot be checked before the apply',
    doc: 'The plan deletes or replaces members of protected fleets under --allow-destroy in deployed data centers, the stack\'s protect rule says `override: admin`, stack.yaml names no `authority`, and FLEET_ADMIN_TOKEN could not be checked through those data centers\' DMZ clients (POST /v1/admin-check, which each passes on to its authority): a DMZ client did not answer within the retry budget, answered 5xx or refused the CLI\'s token, is older than this CLI (404: no such route), its authority did not answer or has no such route (502, 503), a gateway between them kept answering 502, or a proxy answered 429 (a 429 of the DMZ client\'s own, `admin-check-rate-limited`, is apply.admin-check-limited). A token that authority does not hold would be refused only at the first overridden deletion, after the plan\'s other changes were applied (a half-applied plan), so `fleet apply` starts nothing. The detail names each data center and why. Make the DMZ client reachable (and upgrade it and its authority if the route is missing), or add the authority\'s address to stack.yaml (`spec.authority`, with the CLI\'s token at it) so the token is checked there, or apply without --allow-destroy. An embedded data center\'s authority holds the CLI\'s own FLEET_ADMIN_TOKEN and needs no check.',
    severity: 'error',
  },
  'apply.admin-check-limited': {
    summary: 'Too many refused admin-token checks: wait',
    doc: 'The plan deletes or replaces members of protected fleets under --allow-destroy, the stack\'s protect rule says `override: admin`, stack.yaml names no `authority`, and a data center\'s DMZ client answered `fleet apply`\'s check of FLEET_ADMIN_TOKEN (POST /v1/admin-check) 429 `admin-check-rate-limited`: too many checks with a wrong token came from this address within its window (5 in 60 s), or from that data center at its authority (20 in 60 s, passed on by the DMZ client); or, for a stack whose stack.yaml names its `authority`, that authority answered its check (POST /v1/plans/admin-check) so: too many checks with a wrong token came with the CLI\'s token there (20 in 60 s, whatever address). `fleet apply` stops at once, before any change, and the detail says how long to wait (the answer\'s Retry-After, or the time its message names): asking again within the window is refused again, and a wrong token asked again after it is counted again. Check that FLEET_ADMIN_TOKEN is the admin token the authority runs with, then apply again once the wait is over; or apply without --allow-destroy. A rise of `fleet_admin_check_limited_total` (DMZ client) or `fleet_authority_admin_check_limited_total` (authority) is someone guessing at the token, or applies with a wrong one (docs/operations.md).',
    severity: 'error',
  },
  'apply.step-vetoed': {
    summary: 'Request vetoed by the authority',
    doc: 'The authority refused the change: the edge is not in the lifecycle diagram, the VM is not in the state the request assumed, the VM lives in another data center, or the image has no translation there. The detail carries the authority\'s reason; plan again against the current record.',
    severity: 'error',
  },
  'apply.step-failed': {
    summary: 'Cloud operation failed',
    doc: 'The authority approved the change but the data center\'s cloud operation failed; the record moved the VM to the failure state the diagram has for that edge (CreateFailed, BootFailed) or left it where it was. The detail carries the driver\'s error.',
    severity: 'error',
  },
  'apply.step-unanswered': {
    summary: 'Step left unanswered',
    doc: 'The data center\'s provider returned from a member\'s run without an answer to one of its steps, and without an error: the DMZ client\'s own client answers every step or fails, so this is a provider that breaks that promise (a bug). Whether the step was carried out is not known; the member counts as failed at that step (its journal row is closed `failed`, the steps after it `skipped`), never as done. `fleet state show ADDRESS` shows where the VM stands in the record; `fleet apply` again sends the step again under the same idempotency key, so a step that was carried out is not carried out twice.',
    severity: 'error',
  },
  'apply.serve-config': {
    summary: 'Invalid service configuration',
    doc: 'A `fleet serve` command cannot start: a data center is unknown to the stack, a driver is unknown, a token variable is missing, the port is invalid or in use, the host is not an address of this machine or not a name that can be looked up, or the authority\'s URL is not http(s). The detail names the setting.',
    severity: 'error',
  },
  'apply.secret-file': {
    summary: 'Secret file unusable',
    doc: 'A secret the stack keeps under its .fleet folder cannot be read or created: the authority\'s secret (`authority.secret`, read by an embedded apply and `fleet serve orchestrator` unless FLEET_AUTHORITY_SECRET is set) or the dashboard\'s sign-in token (`ui.token`). The detail carries the operating system error (permissions, a folder where the file should be), or names a symbolic link at the file\'s name, which is never read or written through (remove the link; a secret kept elsewhere goes in FLEET_AUTHORITY_SECRET). Give this user access to the file named; never delete or replace an existing authority.secret: the disk keys of encrypted VMs derive from it.',
    severity: 'error',
  },
  'apply.sim-state': {
    summary: 'Simulated data center state unreadable',
    doc: 'The sim driver\'s state file under the stack\'s .fleet folder is not valid JSON: remove the file to start the simulated data center empty (its VMs are lost). Or its state folder cannot be created, or its state files read (permissions, a file where a folder should be): the detail carries the operating system error; give this user access to the folder named.',
    severity: 'error',
  },
  // --- engine/apply (the executor) adds its codes below ---
  'apply.plan-format': {
    summary: 'Unknown plan format',
    doc: 'The saved plan file has a formatVersion this fleet does not read (it reads "2"; a "1" plan, made by an earlier fleet, listed every unchanged member). Make the plan again with this version of fleet.',
    severity: 'error',
  },
  'apply.plan-file': {
    summary: 'Plan file unreadable',
    doc: 'The saved plan file could not be read or is not a plan document (JSON with formatVersion "2"): the output of `fleet plan --format json` (the plan and its diagnostics, unsealed) is named as such; a file (or pipe) over 256 MiB, more than any plan (100,000 new members are about 103 MiB), is refused without being read whole. Write it with `fleet plan --out FILE`.',
    severity: 'error',
  },
  'apply.plan-stack': {
    summary: 'Plan made for another stack',
    doc: 'The saved plan was made for a different stack than the one given with --stack. Apply it with the stack it was made for.',
    severity: 'error',
  },
  'apply.plan-blocked': {
    summary: 'Plan blocked by policy',
    doc: 'The plan has mandatory policy violations, so it cannot be applied. Fix the specs (or the stack\'s policy config) and plan again.',
    severity: 'error',
  },
  'apply.stale-plan': {
    summary: 'Saved plan is stale',
    doc: 'A VM or fleet the saved plan touches changed in the record since the plan was made (another apply, a refresh). Plan again; a plan touching only other fleets stays valid. When the plan itself was applied before (a CI job run again), the detail says so and how that apply ended: succeeded (nothing to do), failed, or stopped before its end (killed, interrupted); a saved plan is applied once, and `fleet apply` (a fresh plan) continues from what the record holds.',
    severity: 'error',
  },
  'apply.plan-applied': {
    summary: 'Plan applied already',
    doc: 'The saved plan was applied before (its id is in the record\'s applied plans). A plan whose first apply changed something is stale anyway; this one changed nothing (it was interrupted before its first step, or every member was vetoed), and applying it again would only replay the answers the data centers keep for its steps. Nothing was sent. Run `fleet plan` again, or `fleet apply` without a plan file.',
    severity: 'error',
  },
  'apply.record-changed': {
    summary: 'Record changed while planning',
    doc: '`fleet apply` without a plan file locks the fleets in scope, then plans under those locks; a VM or fleet of the plan changed in between by a write that takes no fleet lock (a DMZ client still carrying out the steps a killed apply had approved, a second authority writing to the same record). Nothing was changed; run `fleet apply` again.',
    severity: 'error',
  },
  'apply.refresh-locked': {
    summary: 'Fleet not refreshed: an apply holds it',
    doc: '`fleet refresh` (and `fleet plan --refresh`) leaves a fleet alone while another apply holds its lock: mid-apply its VMs are a step ahead of the record by design, and recording that as drift would move the record under the apply. The other fleets are refreshed. Run the refresh again once the apply is done; a lock left by an apply that is gone is shown by `fleet state list` and released with `fleet unlock LOCKID`.',
    severity: 'warning',
  },
  'apply.vm-missing': {
    summary: 'VM missing from its data center',
    doc: 'A VM the fresh plan acts on is not in its data center any more (a denied boot terminated it, or it was deleted outside fleet). `fleet apply` recorded it as docs/recovery.md says (a failure state with no cloud VM, or the terminal state) and planned again: the member is deleted along the recovery edges and created again, or created again. Nothing to do; the warning says what happened.',
    severity: 'warning',
  },
  'apply.vm-drift': {
    summary: 'VM in its data center otherwise than the record held',
    doc: 'A VM the fresh plan acts on is in its data center, but not as the record held it: the record had no cloud id of it (a create whose report was lost, a VM recorded missing that its data center lists again), or it held the VM in a boot state (`PoweredOn`, `Starting`) while its cloud shows it powered off. `fleet apply` recorded what the data center holds (its cloud id; the one edge to the powered-off state, outcome `drift`) and planned again from there (docs/recovery.md). Nothing to do; the warning says what happened.',
    severity: 'warning',
  },
  'apply.import-refused': {
    summary: 'Import refused',
    doc: '`fleet import ADDRESS CLOUD_ID` adopts a cloud VM into a member of a fleet the specs declare, at an address that is a member (index below count) and not live in the record, in a live state of the pack, in a data center the fleet may use (its placement allow-list, hardware traits and image catalog: members never move; a VM forgotten from that very member is taken back wherever it lives); a VM the record tracks already (live at another address, or made for another stack, or whose cloud id a live VM of that data center holds under another VM id in the stack) is not adopted again, and a VM forgotten from another fleet, or one the record never knew whose cloud tags name another fleet, goes only into that fleet (its cloud name and tags name the member it was; the detail names the import that takes it there); within its own fleet it goes only back to that member (the one `fleet state rm` forgot it from, or the one its tags name), never to another index, and the detail names the import that puts it there (after `fleet state rm` of the VM live there now, or a count raised to reach it). A VM whose tags name no fleet (made before the tag, or not by `fleet apply`; an older sim state file) goes into any member. A running VM whose boot neither its DMZ client (an agent-ready report of its current run) nor the record (an approved last boot of that cloud id since the VM\'s latest start) confirms is recorded in the failure state one edge from the booting state; a pack without one refuses it until it is powered off. The detail says which does not hold; `fleet state rm ADDRESS` forgets a live VM first. A Pulumi `Fleet` or `Vm` resource cannot be imported either (`pulumi import`, the import option): its members, spec and versions are known only from the outputs its create left in the Pulumi state, so its read refuses without them; declare it in the program and let `pulumi up` create it (docs/pulumi.md).',
    severity: 'error',
  },
  'apply.import-not-found': {
    summary: 'No such VM to import',
    doc: 'No data center of the stack (or the one given with --data-center) holds a present VM with that cloud id or VM id, as its DMZ client lists them; a data center that did not answer is named in the detail. Check the id in the cloud\'s console, and that the DMZ client is reachable. When no data center asked answered, the error is that data center\'s own (`apply.dmz-unreachable`, `apply.token-missing`, ...), not this one.',
    severity: 'error',
  },
  'apply.import-differs': {
    summary: 'Imported VM differs from its spec',
    doc: 'The VM `fleet import` adopted is not what its fleet\'s spec asks for (state, size, image or disk encryption), or was recorded in another state than its cloud reports: booting, or running with nothing to confirm its boot completed the handshake in its current run (no agent-ready report of that run at its DMZ client, no approved last boot of that cloud id since its latest start in the record: a start from the cloud\'s console since makes both old), it is recorded in the failure state of that boot (BootFailed), and the next apply powers it off and boots it with a new token. Otherwise it is recorded as it is; the next plan moves, resizes or replaces it. Nothing to do but review that plan.',
    severity: 'warning',
  },
  'apply.no-client': {
    summary: 'No DMZ client for data center',
    doc: 'A change concerns a data center for which the stack gives no DMZ client (removed from stack.yaml while VMs of the record still live there: `plan.data-center-gone`). Nothing was applied. Add the data center back to the stack to change or delete its VMs there, or forget the VM with `fleet state rm ADDRESS` (its VM stays in that data center, to delete there by hand) and apply again.',
    severity: 'error',
  },
  'apply.confirmation-required': {
    summary: 'Confirmation required',
    doc: '`fleet apply` without a saved plan asks for confirmation on a terminal; without a terminal (CI) it refuses unless --yes is given.',
    severity: 'error',
  },
  'apply.cancelled': {
    summary: 'Apply cancelled',
    doc: 'The answer to the confirmation prompt was not `yes`; nothing was changed.',
    severity: 'error',
  },
  'apply.member-failed': {
    summary: 'Member failed',
    doc: 'One member of a fleet could not reach its planned state; the others went on. The detail names the step and the cause, then, on a line of its own, what to do, by cause (engine/apply/failure-cause.ts): a veto by the authority (`apply.step-vetoed`) comes back on every re-run, so change the spec or the policy pack whose rule it names; a cloud\'s failure (`apply.step-failed`) leaves the VM where it was or in a failure state (CreateFailed, BootFailed) that the next `fleet apply` takes on along the pack\'s recovery edges (docs/recovery.md), so run it again, once what the error names (capacity: free some or lower the count; credentials: the data center\'s role) is fixed; a timeout (a cloud call, or a boot past the DMZ client\'s spec.readyTimeoutMs, 60 s in an embedded data center) and a boot the authority denied (the VM terminated or powered off, the record holding it BootFailed; `fleet history ADDRESS` says why) are recovered the same way, except that the next `fleet apply` deletes a VM whose boot was denied and creates the member again (it is not booted again); a DMZ client that did not answer: run it again once it does (idempotency keys: nothing is done twice); a data center whose credentials kept coming expired (`apply.credentials-expiring`): renew them at the authority or set the DMZ client\'s clock right, then run it again; a request the DMZ client refused: the code it quotes says what to fix; a member whose steps all answered ok but whose VM the record does not hold in its planned state (`apply.member-unhealthy`, at `the health check`): `fleet history ADDRESS` shows what moved it, then run `fleet apply` again.',
    severity: 'error',
  },
  'apply.member-unhealthy': {
    summary: 'Member not in its planned state after its steps',
    doc: 'Every step of a member was answered ok, but the health check after them found the record holding its VM (for a replace, the new one) in another state than the plan\'s, or holding no such VM: for Running, its agent\'s ready report reached the record and something has moved it since (its data center reporting the VM stopped or failed after it was ready). The check gates a rollout\'s waves (docs/rollouts.md, "Apply") and the delete of a deposed old VM that waits for its member\'s new VM. The member counts as failed, as `apply.member-failed` (whose detail quotes this, at `the health check`) says: against the rollout\'s failureThreshold, in the apply\'s failed members, its summary and its exit code (1), and the applied plan is recorded failed. `fleet history ADDRESS` shows what moved the VM; once that is fixed, `fleet apply` again plans the member from the state the record holds.',
    severity: 'error',
  },
  'apply.stopped': {
    summary: 'Apply stopped mid-way',
    doc: 'The apply lost its record (an outage past the retry budget, a full disk) or its fleet lock (taken over after its lease ran out, or `fleet unlock`) while members ran. No further VM was started; the members in flight were let finish. The detail names the apply, the members in flight, any step a data center answered that the journal does not hold, and whether the apply is recorded as interrupted (else the next `fleet apply` of its fleets records it so and closes its unanswered steps); the cause follows as its own diagnostic. Exit 1. Run `fleet apply` again once the record (or the other apply) is back: it continues from what the record holds.',
    severity: 'error',
  },
  'apply.rollout-stopped': {
    summary: 'Rollout stopped',
    doc: 'A fleet\'s rollout stopped before its last wave: its failed members reached `rollout.failureThreshold` (or held every place maxUnavailable and maxSurge allow). No further wave started; the members it names were left untouched. Fix the cause of the failures, then run `fleet apply` again: the new plan brings the failed members back first and continues with the rest (docs/rollouts.md).',
    severity: 'error',
  },
});
