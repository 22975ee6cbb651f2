// Why a member failed, as a closed set, and what to do about each: the last
// sentence of its apply.member-failed diagnostic. The way out differs by
// cause: a veto comes back on every re-run until the spec or the pack
// changes, while a cloud's failure leaves a failure state the next plan
// recovers (docs/recovery.md, "Every stuck state and its way out").
import type { WireErrorDetail } from '../../protocol/index.ts';
import type { Diagnostic } from '../diags/index.ts';

/**
 * | cause         | from                                                                |
 * | ------------- | ------------------------------------------------------------------- |
 * | `vetoed`      | the authority vetoed the step (apply.step-vetoed)                   |
 * | `boot-denied` | driver.boot-denied: the boot endpoint denied the VM's boot          |
 * | `timeout`     | driver.timeout: a cloud call, or the wait for the boot, ran out     |
 * | `capacity`    | driver.capacity: the data center is full                            |
 * | `credentials` | driver.credentials: the cloud refused the brokered credentials      |
 * | `cloud`       | any other driver error (failed, transient, boot-failed, …)          |
 * |               | or an error that is no driver's                                     |
 * | `unreachable` | the DMZ client did not answer, or failed, after every retry         |
 * | `credentials-expiring` | the DMZ client answered 503 credentials-expiring until the  |
 * |               | retries ran out (apply.credentials-expiring): the credentials the   |
 * |               | authority issued for the data center kept coming expired            |
 * | `refused`     | the DMZ client refused the request (its diagnostic's code says why) |
 * | `unhealthy`   | every step answered ok, but the record does not hold the VM in its  |
 * |               | planned state (apply.member-unhealthy, the rollout gate)            |
 *
 * If you add a cause here, also add its hint (failureHint) and its row in
 * apply.member-failed's doc (engine/diags/codes/apply.ts).
 */
export type FailureCause = 'vetoed' | 'boot-denied' | 'timeout' | 'capacity' | 'credentials' | 'cloud' | 'unreachable' | 'credentials-expiring' | 'refused' | 'unhealthy';

/** The cause of a step the DMZ client answered `failed` (its error is `driver.<kind>`, protocol/errors.ts). */
export function stepFailureCause(error: WireErrorDetail | undefined): FailureCause {
  const kind = error?.code.startsWith('driver.') ? error.code.slice('driver.'.length) : undefined;
  // By kind alone: a driver's message is the cloud's words (and a quoted reason), never a signal. A DMZ client older
  // than driver.boot-denied sends a denied boot as driver.boot-failed: it passes for a cloud's failure, whose advice
  // (run `fleet apply` again) still holds.
  if (kind === 'boot-denied') return 'boot-denied';
  if (kind === 'timeout' || kind === 'capacity' || kind === 'credentials') return kind;
  return 'cloud';
}

/** The cause of a step that could not be carried out at all: the DMZ client's diagnostic. */
export function requestFailureCause(d: Pick<Diagnostic, 'code'>): FailureCause {
  if (d.code === 'apply.credentials-expiring') return 'credentials-expiring';
  return d.code === 'apply.dmz-unreachable' || d.code === 'apply.dmz-error' ? 'unreachable' : 'refused';
}

/** `fleet apply` again takes a failed member on from the state the record holds: the recovery edges' retry. */
const RERUN = '`fleet apply` again takes it on from the state the record holds (CreateFailed, BootFailed: along the pack\'s recovery edges; docs/recovery.md)';

/**
 * What to do about a member that failed for `cause`: one sentence (two at
 * most), ending the member's diagnostic. `code`: the code of the step's own
 * diagnostic (for `refused`, whose way out is that code's).
 */
export function failureHint(cause: FailureCause, f: { address: string; code: string }): string {
  switch (cause) {
    case 'vetoed':
      return 'A re-run asks the same and is vetoed again: change the spec, or the policy pack whose rule the reason names, then `fleet plan` (if the record moved on since the plan, a new plan asks from where it is now).';
    case 'boot-denied':
      return `The authority denied its boot, so the VM is terminated (or, when its data center could not delete it, powered off) and the record holds it BootFailed; \`fleet history ${f.address}\` and the dashboard's boot attempts say why. Once that is fixed, \`fleet apply\` again deletes it along the pack's recovery edges (a VM the authority refused is not booted again) and creates the member again at its address (docs/recovery.md, BootFailed).`;
    case 'timeout':
      // 60 s: the sim's SIM_READY_TIMEOUT_MS (not imported: this module loads at every command's start-up); apply.test holds the two together.
      return `The cloud, or the VM's boot, did not answer in time (a boot has the DMZ client config's spec.readyTimeoutMs, or 60 s in an embedded data center, which has no config): ${RERUN}; if it times out again, check the cloud and that the VM reaches the DMZ client's boot endpoint.`;
    case 'capacity':
      return `The data center is out of capacity: free some, or lower the fleet's count or size; then ${RERUN}.`;
    case 'credentials':
      return `The cloud refused the credentials the authority brokered for the data center: check its role or principal (docs/drivers/); then ${RERUN}.`;
    case 'cloud':
      return `Run \`fleet apply\` again: the plan retries it from the state the record holds (CreateFailed, BootFailed: along the pack's recovery edges; docs/recovery.md). If the cloud fails the same way again, fix what its error names first.`;
    case 'unreachable':
      return `Once the DMZ client answers again, ${RERUN}; its requests carry idempotency keys, so nothing already done is done twice.`;
    case 'credentials-expiring':
      return 'The credentials the authority issues for the data center kept coming expired (or too short-lived for a try again) to its DMZ client, so nothing of the step was carried out or recorded: renew the authority\'s cloud credentials for the data center (its role or principal, docs/drivers/), or set the DMZ client host\'s clock right if it runs ahead of the authority\'s; then `fleet apply` again takes the member on from the state the record holds (docs/recovery.md).';
    case 'refused':
      return `A re-run is refused the same way: \`${f.code}\` in docs/diagnostics.md says what to fix.`;
    case 'unhealthy':
      return `Its steps were carried out, but something moved its VM since (its data center reporting it stopped or failed after it was ready, say): \`fleet history ${f.address}\` shows what. Once that is fixed, ${RERUN}.`;
  }
}
