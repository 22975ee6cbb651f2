// The authority's report path: a report is matched against the approval it
// answers (decisions.ts judgeReport) and moves the record along the approved
// edge, or along the diagram's failure edge, once (authority.ts, "move at
// report"). Part of the service (authority.ts, Core).
import { bootedStates } from '../policy/lifecycle.ts';
import { VersionConflictError, type HistoryItem, type TransitionItem, type VmRow } from '../record/index.ts';
import { WireError, type AuthorizeRequest, type ReportRequest, type ReportResponse, type WireCode } from '../../protocol/index.ts';
import { foresee, onward, passedAlready, reportCtx, rowAt, type Foreseen } from './chain.ts';
import type { Core } from './core.ts';
import { approvedEarlier, failureEdge, historySize, judgeReport, pendingKey } from './decisions.ts';
import { StaleRow } from './rows.ts';
import { toAuthorityVm } from './answers.ts';

/** Report refusals that depend on the row: decided again on a fresh read when the row was remembered. */
const ROW_REFUSALS: readonly WireCode[] = ['unknown-vm', 'wrong-data-center'];

/**
 * A failure report of a denied boot (code driver.boot-denied) that leaves the
 * VM in a failure state: whether the record now counts its latest boot as
 * denied (FleetRecord.deniedBoots: this report's row and the authority's own
 * denial of that boot), as the CLI's planner asks it. The answer says so
 * (ReportResponse.bootDenied), so a client that plans on its own (a Pulumi
 * program) deletes the VM and creates it again instead of booting it again.
 * One read, on this rare path only.
 */
async function deniedNow(c: Core, req: ReportRequest, row: VmRow): Promise<boolean> {
  const lc = c.o.pack.lifecycle;
  if (req.code !== 'driver.boot-denied' || !lc.failure.includes(row.state)) return false;
  return (await c.o.record.deniedBoots([row.id], bootedStates(lc))).length > 0;
}

/**
 * report, inside serial(). With `next` (advance), an ok transition also
 * writes, in its statement, the edges of next that would be approved on
 * the row it makes (foresee), and says so in `foreseen`; `row` is the VM's
 * row afterwards.
 */
export function settle(
  c: Core,
  caller: string,
  req: ReportRequest,
  chain?: { next: readonly AuthorizeRequest[]; ahead: boolean },
): Promise<{ report: ReportResponse; row: VmRow; foreseen?: Foreseen[] }> {
  const next = chain?.next;
  // The edge approved ahead after this one: its intent rides with this
  // report's transition. A failure, or a report refused, drops the VM's
  // approvals ahead (a repeated ok report keeps them).
  const queued = c.ahead.get(req.vmId);
  const following = !next && req.outcome === 'ok' && queued?.[0].from === req.to ? queued[0] : undefined;
  if (req.outcome !== 'ok') c.ahead.drop(req.vmId);
  type Settled = { report: ReportResponse; row: VmRow; foreseen?: Foreseen[] };
  return c.rows.decideOn(req.vmId, async (vm, remembered): Promise<Settled> => {
    // Anything but the common case is decided again on a fresh read.
    const refuse = (code: WireCode, message: string): never => {
      if (remembered) throw new StaleRow(message);
      throw new WireError(code, message);
    };
    const answer = (row: VmRow, effect: ReportResponse['effect']) => ({ report: { vm: toAuthorityVm(row), effect }, row });
    /** A failure's answer, saying when the record counts the VM's boot as denied (deniedNow). */
    const failedAnswer = async (row: VmRow, effect: ReportResponse['effect']): Promise<Settled> => {
      const a = answer(row, effect);
      return (await deniedNow(c, req, row)) ? { ...a, report: { ...a.report, bootDenied: true } } : a;
    };
    // The approval the report answers: remembered, else (the authority
    // restarted in between) as the intent row in the record says it.
    // By the caller's data center too: another data center's request under the same id is not this approval.
    const key = pendingKey(caller, req.requestId);
    let pending = c.pending.get(key);
    if (!pending && vm) {
      // Looked up on a fresh read only (a remembered row is read again first).
      if (remembered) throw new StaleRow('no approval remembered');
      pending = approvedEarlier(c.o.pack.lifecycle, vm, await c.o.record.approvalOf(vm.id, req.requestId));
    }
    const judged = judgeReport(c.o.pack.lifecycle, caller, req, vm, pending);
    if (!judged.ok) {
      if (ROW_REFUSALS.includes(judged.refusal)) return refuse(judged.refusal, judged.reason);
      throw new WireError(judged.refusal, judged.reason);
    }
    // judgeReport refuses a report without a VM.
    const row = vm!;
    const ctx = { actor: `dmz-client:${caller}`, planId: req.planId, requestId: req.requestId };
    const approvedAt = pending?.version;
    /**
     * Whether the VM moved along another approval since this one (refused
     * where the report would write: report-superseded). Found in the record:
     * judgeReport says. Remembered: only when the VM changed since the
     * version it was decided on does the record's history tell whether it
     * moved along another approval or was only updated by another writer (a
     * cloud id, a spec hash: still good). A remembered row lags the record,
     * never leads it, so it cannot make this fire wrongly.
     */
    const supersededNow = async (): Promise<boolean> =>
      judged.superseded || pending?.dropped === true || (approvedAt !== undefined && row.version > approvedAt && (await c.o.record.approvalOf(row.id, req.requestId))?.superseded === true);
    const superseded = (at: VmRow) =>
      `request ${req.requestId} (${req.from} -> ${req.to}) was approved for VM ${at.address} before it moved along another approval; it is ${at.state} now, and an approval is good only for the VM it was decided on: authorize the edge again`;
    if (req.outcome === 'ok') {
      if (judged.resize) {
        const size = req.size!;
        if (judged.repeated) {
          if (remembered) throw new StaleRow('reported already');
          return answer(row, 'already');
        }
        if (await supersededNow()) return refuse('report-superseded', superseded(row));
        const updated = await c.o.record.updateVm(row.id, row.version, { size }, { ...ctx, detail: `resized to ${historySize(size)}` });
        // A resize moves no state, so no transition row carries its outcome
        // or the intent of the edge approved ahead after it: both are
        // history rows of their own (else history stops at the resize's
        // intent, and the rest of the chain's intents are never written).
        const done = `${req.detail ?? 'resize done'}: resized to ${historySize(size)}`;
        const rows: HistoryItem[] = [{ vmId: row.id, row: { from: row.state, to: row.state, ...reportCtx(caller, req, 'ok', done) } }];
        if (following) rows.push({ vmId: row.id, row: { from: row.state, outcome: 'ok', ...following.intent } });
        const problems = (await c.o.record.addHistoryMany(rows)).filter((p) => p !== undefined);
        if (problems.length > 0) throw problems[0];
        if (following) c.ahead.shift(req.vmId);
        c.rows.remember(updated);
        c.pending.delete(key);
        return answer(updated, 'moved');
      }
      if (row.state === req.to) {
        if (remembered) throw new StaleRow('already there');
        return answer(row, 'already');
      }
      if (row.state !== req.from) {
        // An advance sent again after its answer was lost finds the VM past
        // req.to along its chain's `none` edges: already (chain answers them).
        if (!remembered && next && passedAlready(c.o.pack.lifecycle, row, req.to, next) > 0) return answer(row, 'already');
        return refuse('state-moved', `VM ${row.address} is ${row.state}, not ${req.from}`);
      }
      if (judged.repeated) {
        // The approval was looked up after the row was read: the same report, taken meanwhile by another
        // replica (a resend decided at the same moment), is in the history while this row still says
        // `from`. Decided again on a fresh read when the row has moved since (there the VM is at `to`:
        // already); else its approval was reported and the VM came back to `from`: a report is taken once.
        const now = await c.o.record.getVm(row.id);
        if (now && now.version !== row.version) throw new VersionConflictError(row.id, row.version, now.version, `VM ${row.address} moved while its report was judged`);
        return refuse('report-repeated', `request ${req.requestId} was reported already (VM ${row.address} moved ${req.from} -> ${req.to} then); a report is taken once`);
      }
      if (await supersededNow()) return refuse('report-superseded', superseded(row));
      const patch: TransitionItem['patch'] & {} = {};
      if (req.cloudId !== undefined) patch.cloudId = req.cloudId;
      if (c.o.pack.lifecycle.isTerminal(req.to)) patch.retire = true;
      // The row the transition makes, as far as judgeEdge reads it (timestamps aside).
      const after: VmRow = {
        ...row,
        state: req.to,
        version: row.version + 1,
        cloudId: patch.cloudId ?? row.cloudId,
        retiredAt: patch.retire ? new Date().toISOString() : row.retiredAt,
      };
      // A chain that commits the VM to deletion is foreseen only when its fleet is not protected (read now; else the service judges it, override included).
      const deleting = next?.some((n) => n.to !== undefined && c.policy.entersDeletion(n.from, n.to));
      const fleetProtected = deleting ? ((await c.o.record.listFleets(row.stack, [row.fleet]))[0]?.protected ?? false) : undefined;
      const foreseen = next ? foresee(c.o.pack, caller, next, after, { ahead: chain.ahead, plain: c.policy.plain(fleetProtected) }) : [];
      const moved = await c.transitions.submit({
        stack: row.stack,
        fleet: row.fleet,
        id: row.id,
        expectedVersion: row.version,
        to: req.to,
        ctx: reportCtx(caller, req, 'ok', req.detail ?? null),
        patch,
        ...onward(caller, foreseen),
        ...(following ? { intent: following.intent } : {}),
      });
      c.rows.remember(moved);
      c.pending.delete(key);
      // Its intent is written: from now on it is an edge like any authorized one.
      if (following) c.ahead.shift(req.vmId);
      return { report: { vm: toAuthorityVm(rowAt(moved, after)), effect: 'moved' }, row: moved, foreseen };
    }
    if (judged.repeated) {
      // A failure reported again (its answer was lost): nothing more to write.
      if (remembered) throw new StaleRow('reported already');
      return failedAnswer(row, 'noted');
    }
    if (await supersededNow()) return refuse('report-superseded', superseded(row));
    const failTo = failureEdge(c.o.pack.lifecycle, req.from);
    if (failTo !== undefined && row.state === req.from) {
      const moved = await c.transitions.submit({
        stack: row.stack,
        fleet: row.fleet,
        id: row.id,
        expectedVersion: row.version,
        to: failTo,
        ctx: { ...ctx, outcome: 'failed', detail: req.detail ?? 'the cloud operation failed', code: req.code ?? null },
      });
      c.rows.remember(moved);
      c.pending.delete(key);
      return failedAnswer(moved, 'failed');
    }
    if (remembered) throw new StaleRow('failure without a failure edge');
    c.pending.delete(key);
    // Once: the same report decided at this moment by another replica (a resend) writes it, or this one does.
    await c.o.record.addHistory(row.id, { from: req.from, to: req.to, outcome: 'failed', ...ctx, detail: req.detail ?? 'the cloud operation failed', code: req.code ?? null }, undefined, { once: true });
    // A resize that failed grew nothing: its reservation (record/grow.ts) ends now, not at expiry.
    if (judged.resize) await c.o.record.dropGrow(row.id);
    return answer(row, 'noted');
  }).catch((err: unknown) => {
    c.ahead.drop(req.vmId);
    throw err;
  });
}
