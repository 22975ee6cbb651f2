// Boot authorization: a booting VM asks for its disk key (docs/protocol.md
// "Boot authorization"). The approval is one record statement
// (authorizeBoots: the row check, the token use and the attempt row); a
// denial is explained from the row that statement saw (bootDenial) and
// recorded as before (an attempt row, and a history row when the VM is known).
// The caller (anything that can reach a DMZ client's open boot endpoint) is
// answered only BOOT_DENIED_REASON: the explanation, which names the VM's
// address, state, cloud id or image, is the operator's (record and log, and
// the answer's `detail` to the DMZ client, which takes it off before
// answering the VM and puts it in the failed step of the boot it awaits).
//
// A boot token is used once, but its approval is answered again: an agent
// whose data center died between the authority's approval and the agent
// acting on it (a few ms) presents the same token when it resumes, and
// denying it would get a VM the authority had accepted terminated. So the
// same VM, cloud id, image and token, still in a booting state, within
// BOOT_REPEAT_MS of the first use, the VM not having left that boot since
// (its record at most one write past the use: the boot edge's own report),
// gets the same approval (and the same disk key), written once. Another VM's
// token, a token replaced by a newer boot edge after its use, one past the
// window, any token once the VM moved on (Running, BootFailed, …), and a
// used one once the VM came back into a booting state without a new boot
// edge (powered off and on again, a drift, an import, an edit) is denied.
//
// A token replaced unused (the boot edge approved again by the next apply,
// after a crash lost the first boot's report) stays good, once, beside the
// new one (the record keeps it: boot_tokens.prev_hash): the VM may be booting
// with it, and denying it would get a VM the record holds terminated.
//
// Any token, used or not, kept or not, boots only the boot it was issued
// for: once the VM has left the booting states after its issue (the record
// reads the VM's history since its issue: boot_tokens.issued_history), it
// is denied, back in a booting state or not (leftBoot).
import { randomUUID } from 'node:crypto';
import { Batched } from '../durability/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { BootAttempt, BootCheck, BootCheckResult, FleetRecord } from '../record/index.ts';
import { sha256, type BootAuthorizeRequest, type BootAuthorizeResponse } from '../../protocol/index.ts';
import { UUID, bootDenial, bootStates } from './decisions.ts';
import { diskKey } from './keys.ts';
import type { VmRows } from './rows.ts';
import { withCode, withDetail } from './answers.ts';

/** How long after its first use a boot token's approval is answered again (docs/recovery.md, "Resumed boots"). */
export const BOOT_REPEAT_MS = 60 * 60_000;

/**
 * The reason every denied boot is answered with, whatever the cause. The boot
 * endpoint is open (a booting VM holds no credential but its one-time token),
 * so its answer must tell an unproven caller nothing of the record: not
 * whether a VM id is known, nor its address, state, cloud id or image. Why a
 * boot was denied goes to the operator: the boot attempt row, the VM's
 * history (`boot denied: …`) and the authority's log line.
 */
export const BOOT_DENIED_REASON = 'boot not authorized: the authority records why for the operator (the VM\'s history, fleet history ADDRESS, and its log); the caller is told nothing more';

export class BootGate {
  private readonly boots: Batched<BootCheck, BootCheckResult>;
  private readonly attempts: Batched<BootAttempt, undefined>;
  /** The states a VM may boot in: those a `boot` edge leaves or enters. */
  private readonly states: readonly string[];

  constructor(
    private readonly record: FleetRecord,
    pack: LoadedPack,
    private readonly secret: string,
    private readonly rows: VmRows,
    batching: { parallel: number; overlapAt: number },
    /** The stack this authority serves: another stack's VM (stacks may share a record) is unknown here. */
    private readonly stack: string,
    private readonly repeatWithinMs: number = BOOT_REPEAT_MS,
  ) {
    this.boots = new Batched((items) => record.authorizeBoots(items), batching);
    this.attempts = new Batched(async (items) => (await record.addBootAttempts(items), items.map(() => undefined)), batching);
    this.states = bootStates(pack.lifecycle);
  }

  async authorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    // A body naming another data center is denied without a check, but still written to the VM's history (rows.get: undefined for a non-UUID id).
    const checked: BootCheckResult =
      req.dataCenter === caller && UUID.test(req.vmId)
        ? await this.boots.submit({
            vmId: req.vmId,
            stack: this.stack,
            dataCenter: caller,
            cloudId: req.cloudId,
            image: req.image,
            tokenHash: sha256(req.bootToken),
            allowedStates: this.states,
            reason: 'matches the record',
            repeatWithinMs: this.repeatWithinMs,
          })
        : { approved: false, vm: await this.rows.get(req.vmId) };
    if (checked.approved) {
      const res: BootAuthorizeResponse = { approved: true, reason: `VM ${checked.vm.address} matches the record` };
      if (checked.vm.encryptedDisk) res.diskKey = diskKey(this.secret, checked.vm.id);
      return res;
    }
    // Another stack's VM is none of this authority's business: unknown here, and nothing written to its history.
    const vm = checked.vm?.stack === this.stack ? checked.vm : undefined;
    const { reason, refusal } = bootDenial(
      caller,
      req,
      vm,
      this.states,
      vm ? checked.usedAtVersion : undefined,
      vm ? checked.leftBoot : undefined,
      vm ? checked.tokenKnown : undefined,
    );
    await this.attempts.submit({ vmId: vm ? vm.id : null, dataCenter: caller, cloudId: req.cloudId, image: req.image, approved: false, reason });
    if (vm) {
      await this.record.addHistory(vm.id, {
        from: vm.state,
        to: vm.state,
        outcome: 'denied',
        actor: 'authority',
        requestId: randomUUID(),
        detail: `boot denied: ${reason}`,
      });
    }
    // The cause rides beside the generic reason for the DMZ client (authenticated: its data center's token), which
    // takes it off before answering the VM and shows it in the failed step of the boot it carries out. Not for a VM
    // of another data center: a DMZ client learns nothing of another data center's VMs (it is refused for them).
    const detail = !vm || vm.dataCenter === caller ? { detail: reason } : {};
    return withDetail(withCode({ approved: false, reason: BOOT_DENIED_REASON, ...detail }, refusal), reason);
  }
}
