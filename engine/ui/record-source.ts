// The dashboard's view of a FleetRecord: only its reads (UiRecord), narrowed
// to one stack, and only the fields the pages show. What is left out stays
// out on purpose: boot token hashes, idempotency keys, spec hashes and
// request ids are never read here, so no page can show them.
import { holderGone } from '../record/locks.ts';
import type { AppliedPlan, FleetRecord, JournalRow, LockRow, VmRow } from '../record/types.ts';
import type { DiagramInput } from './diagram.ts';
import type { UiSource } from './source.ts';
import type { UiJournal, UiPlan, UiVm } from './pages.ts';

/**
 * The record calls the dashboard makes: reads only, so a UiSource cannot write even by mistake, and bounded ones only
 * (counts summed by the record, pages of rows), so no page can read every VM or journal row of a big record.
 */
export type UiRecord = Pick<FleetRecord, 'countVmsPage' | 'fleetMembers' | 'history' | 'listLocks' | 'listPlans' | 'planJournalPage' | 'listBootAttempts'>;

export function recordSource(record: UiRecord, stack: string, pack: { name: string; version: string; lifecycle: DiagramInput }): UiSource {
  /**
   * A `running` apply whose holder is known gone: a lock naming it whose
   * process no longer runs on this host (holderGone, as `fleet state list`
   * says of locks), or no lock naming it at all (an apply holds its fleets'
   * locks from before its plan starts to after it ends: one without any was
   * killed and its locks broken or expired). The next apply of its fleets
   * records it `interrupted`; until then the list showed it running.
   */
  async function uiPlans(plans: readonly AppliedPlan[]): Promise<UiPlan[]> {
    // Of the running ones only, one lock per holder each: a whole-stack apply holds thousands, all of one holder.
    const running = plans.filter((p) => p.result === 'running').map((p) => p.id);
    const locks = running.length > 0 ? await record.listLocks(stack, { planIds: running }) : [];
    return plans.map((p) => {
      const held = locks.filter((l) => l.planId === p.id);
      const gone = p.result === 'running' && (held.length === 0 || held.every((l) => holderGone(l)));
      return { id: p.id, who: p.who, startedAt: p.startedAt, finishedAt: p.finishedAt, result: p.result, digest: p.digest, ...(gone ? { holderGone: true as const } : {}) };
    });
  }

  return {
    stack,
    pack: { name: `${pack.name}@${pack.version}`, lifecycle: pack.lifecycle },
    async overview(offset, limit) {
      const o = await record.countVmsPage(stack, { offset, limit });
      return {
        fleets: o.fleets,
        totals: o.totals.map((t) => ({ dataCenter: t.dataCenter, vms: t.vms })),
        counts: o.rows.map((c) => ({ fleet: c.fleet, dataCenter: c.dataCenter, state: c.state, vms: c.vms })),
      };
    },
    async fleetMembers(fleet, offset, limit) {
      // From the URL: a NUL is no fleet's name, and PostgreSQL refuses it in a query (a 500 instead of the 404).
      if (fleet.includes('\u0000')) return { total: 0, members: [] };
      const page = await record.fleetMembers(stack, fleet, { offset, limit });
      return { total: page.total, members: page.vms.map(uiVm) };
    },
    async vm(fleet, index) {
      // From the URL too: an index past the record's integer column is no VM's (PostgreSQL would refuse it: a 500).
      if (fleet.includes('\u0000') || !(index >= 0 && index <= 2 ** 31 - 1)) return undefined;
      // The current VM sorts before an old one it replaces (deposed).
      const [v] = (await record.fleetMembers(stack, fleet, { offset: 0, limit: 1, index })).vms;
      return v && !v.deposed ? uiVm(v) : undefined;
    },
    async history(address, limit) {
      return (await record.history(stack, address, { limit })).map(historyOf);
    },
    async drift(limit) {
      return (await record.history(stack, undefined, { limit, outcome: 'drift' })).map(historyOf).reverse();
    },
    async listLocks(which) {
      // From the URL (a fleet's page): a NUL is no fleet's name, and PostgreSQL refuses it in a query.
      const opts = 'limit' in which ? { limit: which.limit } : { fleets: which.fleets.filter((f) => !f.includes('\u0000')) };
      return (await record.listLocks(stack, opts)).map((l) => {
        // A lock's fencing token, when the record keeps one (a newer record does).
        const token = (l as LockRow & { fencingToken?: unknown }).fencingToken;
        return {
          fleet: l.fleet,
          lockId: l.lockId,
          who: l.who,
          host: l.host,
          pid: l.pid,
          planId: l.planId,
          since: l.since,
          expiresAt: l.expiresAt,
          ...(holderGone(l) ? { holderGone: true as const } : {}),
          ...(typeof token === 'number' || typeof token === 'string' ? { fencingToken: Number(token) } : {}),
        };
      });
    },
    async recentPlans(limit) {
      return uiPlans(await record.listPlans(stack, { limit }));
    },
    async plan(id) {
      // From the URL: a NUL is no plan id, and PostgreSQL refuses it in a query (a 500 instead of the 404).
      if (id.includes('\u0000')) return undefined;
      const [p] = await uiPlans(await record.listPlans(stack, { id, limit: 1 }));
      return p;
    },
    async planJournal(planId, from, limit, failures) {
      const page = await record.planJournalPage(planId, { ...from, limit, failures });
      return { total: page.total, rows: page.rows.map(journalOf), failedTotal: page.failedTotal, failed: page.failed.map(journalOf), firstId: page.firstId, lastId: page.lastId };
    },
    async bootAttempts(vmId, limit) {
      return (await record.listBootAttempts(vmId, { limit })).map((b) => ({ at: b.at, approved: b.approved, reason: b.reason, dataCenter: b.dataCenter, cloudId: b.cloudId }));
    },
  };
}

function uiVm(v: VmRow): UiVm {
  return {
    id: v.id,
    address: v.address,
    fleet: v.fleet,
    index: v.index,
    dataCenter: v.dataCenter,
    state: v.state,
    desiredState: v.desiredState,
    image: v.image,
    realImage: v.realImage,
    size: { cpu: v.size.cpu, memoryGiB: v.size.memoryGiB, diskGiB: v.size.diskGiB },
    encryptedDisk: v.encryptedDisk,
    cloudId: v.cloudId,
    version: v.version,
    updatedAt: v.updatedAt,
    deposed: v.deposed,
  };
}

function journalOf(j: JournalRow): UiJournal {
  return { address: j.address, seq: j.seq, from: j.from, to: j.to, status: j.status, detail: j.detail, at: j.at };
}

function historyOf(h: Awaited<ReturnType<UiRecord['history']>>[number]) {
  return { at: h.at, address: h.address, from: h.from, to: h.to, actor: h.actor, planId: h.planId, outcome: h.outcome, detail: h.detail, code: h.code };
}
