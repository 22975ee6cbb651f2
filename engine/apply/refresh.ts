// `fleet refresh`: compare what each data center's cloud holds with the
// record. A difference that is one edge of the diagram is recorded as a
// transition (outcome `drift`, with its history row); anything else is only
// reported and noted in history, never written as if it were an edge.
// `fleet refresh --check` (write: false) reports the same differences and
// writes nothing: a one-edge difference is then `edge`, not `recorded`.
import { hostname } from 'node:os';
import { FleetError, clip, diag, type Code, type Diagnostic } from '../diags/index.ts';
import { bootStates, bootedStates } from '../policy/index.ts';
import type { Lifecycle } from '../policy/types.ts';
import { holderGone, lockHolder } from '../record/locks.ts';
import type { FleetRecord, LockHandle, LockRow, VmRow } from '../record/types.ts';
import type { ActualVm, ObservedAgent } from '../../protocol/index.ts';
import type { StackSession } from './session.ts';

/**
 * Where a VM the cloud does not hold (any more) is recorded, so the record
 * is never left saying it runs:
 *
 * | the record's state                  | recorded                                   | then the planner              |
 * | ----------------------------------- | ------------------------------------------ | ----------------------------- |
 * | a failure state (BootFailed)        | stays, with no cloud id                    | deletes it along the recovery |
 * |                                     |                                            | edges, creates it again       |
 * | one edge from a failure state       | that edge (Starting -> BootFailed), no     | as above                      |
 * | (Starting, BeingCreated)            | cloud id                                   |                               |
 * | any other (Running, PoweredOff, …)  | the terminal state (Deleted), retired      | creates the member again      |
 *
 * The last row is not an edge of the diagram: nothing carried the VM there,
 * it is gone; the history row (outcome `drift`) says so.
 */
export function missingOutcome(lc: Lifecycle, state: string): { to: string; retire: boolean } {
  if (lc.failure.includes(state)) return { to: state, retire: false };
  const failure = lc.failure.find((f) => lc.allows(state, f));
  if (failure) return { to: failure, retire: false };
  return { to: lc.terminal[0], retire: true };
}

/** Records a VM its data center does not hold as missingOutcome says, with a history row; returns what was recorded. */
export async function recordMissing(record: FleetRecord, lc: Lifecycle, vm: VmRow, ctx: { actor: string; why: string }): Promise<string> {
  const { to, retire } = missingOutcome(lc, vm.state);
  const detail = `${ctx.why}: ${vm.dataCenter} has no VM ${vm.cloudId ?? vm.id}`;
  if (to === vm.state) {
    // One statement writes the row and its history row (transitionVm to the state it is in): as two (updateVm, then
    // addHistory), a refresh killed in between left the cloud id cleared with no history row saying why.
    await record.transitionVm(vm.id, vm.version, vm.state, { actor: ctx.actor, outcome: 'drift', detail: `${detail}; kept in ${vm.state} with no cloud VM, so the next plan deletes it and creates it again` }, { cloudId: null });
    return `${vm.state}, with no cloud VM: the next plan deletes it and creates it again`;
  }
  await record.transitionVm(vm.id, vm.version, to, { actor: ctx.actor, outcome: 'drift', detail: `${detail}; recorded ${to}` }, { cloudId: null, ...(retire ? { retire: true } : {}) });
  return retire ? `${to}: the next plan creates ${vm.address} again` : `${to}, with no cloud VM: the next plan deletes it and creates it again`;
}

/**
 * What refresh records of a VM its cloud holds in `observed` while the
 * record holds it in `state` (and observed is not terminal):
 *
 * | case                                                        | answer                 |
 * | ----------------------------------------------------------- | ---------------------- |
 * | one edge, or a path of the diagram (never into a failure)   | `path`: recorded       |
 * | no such path                                                | `no-path`: left as is  |
 * | the path ends in a state the authority answers boots in     | `unapproved-boot`:     |
 * | (bootStates: PoweredOn, Starting) and starts outside one    | left as is             |
 *
 * The last row: a VM seen booting (or powered on, about to) that the record
 * holds Running, PoweredOff, … was started by no approved `boot` edge (an
 * in-guest reboot, a start from the cloud's console). The authority answers a
 * boot only while the record holds the VM in a boot state, and answers its
 * last token again within an hour of its use (engine/authority/boot.ts):
 * recording the drift would hand an in-guest reboot its disk key with the
 * token of the boot before. Only an approved edge moves the record there.
 * So too a path through the boot states from outside them (BootFailed or
 * PoweredOff -> … -> Starting -> Running) when nothing saw the handshake of
 * the boot it stands for (`agent` `unknown`: a running VM its DMZ client
 * holds no agent report of): that is the VM `fleet import` recorded
 * BootFailed for want of that evidence (engine/cli/commands/import.ts), and
 * walking it to Running would undo that.
 */
export function driftPath(lc: Lifecycle, state: string, observed: string, agent?: ObservedAgent): { path: string[] } | { refused: 'no-path' | 'unapproved-boot' } {
  const path = lc.allows(state, observed) ? [state, observed] : lc.path(state, observed);
  if (!path) return { refused: 'no-path' };
  const booting = bootStates(lc);
  if (booting.includes(observed) && !booting.includes(state)) return { refused: 'unapproved-boot' };
  if (agent === 'unknown' && !booting.includes(state) && path.some((s) => booting.includes(s))) return { refused: 'unapproved-boot' };
  return { path };
}

/**
 * | kind          | what                                                              |
 * | ------------- | ----------------------------------------------------------------- |
 * | recorded      | one diagram edge away, or several along the diagram's path (never |
 * |               | into a failure state); refresh recorded each transition           |
 * | edge          | as recorded; --check: refresh would record it                     |
 * | not-an-edge   | no path of the diagram leads from the record's state to the       |
 * |               | cloud's (or only through a failure state), or the path would put  |
 * |               | the record in a boot state no approved edge led to (driftPath),   |
 * |               | or the VM is in a failure state whose latest boot the authority   |
 * |               | denied (deniedInCloud: kept there, deleted and created again);    |
 * |               | left as is                                                        |
 * | missing       | the record holds the VM, the data center does not; refresh        |
 * |               | records where that leaves it (missingOutcome), --check says where |
 * | unknown       | the data center runs a VM the record does not know                |
 * | unreachable   | the data center's DMZ client did not answer (an error, not drift) |
 */
export type DriftKind = 'recorded' | 'edge' | 'not-an-edge' | 'missing' | 'unknown' | 'unreachable';
export const DRIFT_KINDS: readonly DriftKind[] = ['recorded', 'edge', 'not-an-edge', 'missing', 'unknown', 'unreachable'];

export interface DriftEntry {
  kind: DriftKind;
  dataCenter: string;
  /** VM address for known VMs; the cloud id for unknown ones. */
  address: string;
  recordState: string | null;
  actualState: string | null;
  detail: string;
  /** `unreachable` only: the diagnostic code the data center's failure had (apply.dmz-unauthorized, apply.dmz-unreachable, ...). */
  code?: Code;
}

export interface RefreshResult {
  checked: number;
  drift: DriftEntry[];
}

/** What a refresh did: its result, and the fleets it left alone because an apply holds them (apply.refresh-locked warnings). */
export interface RefreshOutcome extends RefreshResult {
  diagnostics: Diagnostic[];
}

/** How often a refresh renews the locks it holds (a third of the record's default 30 s lease, as an apply). */
const REFRESH_LEASE_BEAT_MS = 10_000;

/** A lock whose lease still runs (its holder may be gone: only an apply breaks such a lock, lockFleets). */
function heldByOther(l: LockRow, now: number): boolean {
  return Date.parse(l.expiresAt) > now;
}

function lockedWarning(l: LockRow, vms: number): Diagnostic {
  const plan = l.planId ? ` for plan ${l.planId}` : '';
  const gone = holderGone(l)
    ? ` That process is gone: the next \`fleet apply\` of the fleet breaks the lock, or \`fleet unlock ${l.lockId}\`.`
    : ` Refresh again once that apply is done.`;
  return diag(
    'apply.refresh-locked',
    `${lockHolder(l)} holds the lock of fleet ${l.fleet} (${vms} VM${vms === 1 ? '' : 's'})${plan} since ${l.since} (lock id ${l.lockId}): its VMs may be mid-change, a step ahead of the record, so they were left as they are.${gone}`,
    { address: l.fleet },
  );
}

/**
 * The locks of `fleets` for a refresh that writes, all of them but those
 * another apply holds (which the refresh leaves alone). Taken at once, so a
 * refresh never records an apply's steps in flight as drift, and an apply
 * never plans on a record a refresh moves meanwhile (docs/recovery.md).
 */
async function lockForRefresh(record: FleetRecord, stack: string, fleets: readonly string[], actor: string): Promise<{ handle?: LockHandle; held: LockRow[] }> {
  const holder = { who: actor, host: hostname(), planId: null, pid: process.pid };
  const held = new Map<string, LockRow>();
  for (let attempt = 0; ; attempt++) {
    const want = fleets.filter((f) => !held.has(f));
    if (want.length === 0) return { held: [...held.values()] };
    try {
      return { handle: await record.acquireLocks(stack, want, holder, { timeoutMs: 0 }), held: [...held.values()] };
    } catch (err) {
      if (!(err instanceof FleetError) || err.diagnostics[0]?.code !== 'record.lock-held' || attempt >= 4) throw err;
      const now = Date.now();
      for (const l of await record.listLocks(stack)) if (want.includes(l.fleet) && heldByOther(l, now)) held.set(l.fleet, l);
    }
  }
}

/**
 * `write: false` (`fleet refresh --check`) reads the record and the data
 * centers and writes nothing; `inScope` (`fleet plan --refresh --target`)
 * leaves the other fleets alone. A fleet another apply holds is left alone
 * either way (an apply-refresh-locked warning says so); a refresh that
 * writes holds the other fleets' locks while it compares and writes.
 */
/**
 * What refreshStack throws when its `signal` aborts (Ctrl-C): the comparison is left where it is (a data center's
 * listing may never answer), no further write is made, and its locks are released before this reaches the caller.
 */
export class RefreshInterrupted extends Error {
  constructor() {
    super('the refresh was interrupted');
    this.name = 'RefreshInterrupted';
  }
}

export async function refreshStack(
  session: StackSession,
  opts: { actor: string; write?: boolean; inScope?: (fleet: string) => boolean; signal?: AbortSignal },
): Promise<RefreshOutcome> {
  const { stack, record } = session;
  const write = opts.write ?? true;
  const all = await record.listVms(stack.name);
  // `fleet plan --refresh --target/--exclude`: the fleets out of scope are left as they are (not locked, checked
  // or written), their VMs known all the same (never `unknown`).
  const recorded = [...new Set(all.map((v) => v.fleet))];
  const outOfScope = opts.inScope ? recorded.filter((f) => !opts.inScope!(f)) : [];
  const fleets = recorded.filter((f) => !outOfScope.includes(f)).sort();
  let handle: LockHandle | undefined;
  let held: LockRow[];
  if (write) {
    ({ handle, held } = await lockForRefresh(record, stack.name, fleets, opts.actor));
  } else {
    const now = Date.now();
    held = (await record.listLocks(stack.name)).filter((l) => fleets.includes(l.fleet) && heldByOther(l, now));
  }
  const skipped = new Set([...held.map((l) => l.fleet), ...outOfScope]);
  const diagnostics = held.map((l) => lockedWarning(l, all.filter((v) => v.fleet === l.fleet).length));
  let lost: unknown;
  const beat = handle ? setInterval(() => void handle!.heartbeat().catch((err: unknown) => (lost ??= err)), REFRESH_LEASE_BEAT_MS) : undefined;
  beat?.unref();
  try {
    // Read again under the locks: what an apply finished just before they were taken.
    // Only the fleets looked at first: one that appeared since is an apply's, under its lock.
    const vms = handle ? (await record.listVms(stack.name)).filter((v) => fleets.includes(v.fleet) || outOfScope.includes(v.fleet)) : all;
    const comparing = compare(session, vms, skipped, write, opts.actor, () => {
      if (lost) throw lost;
    });
    let result: RefreshResult;
    if (opts.signal) {
      const signal = opts.signal;
      // An interrupt stops the wait, not the comparison: its writes check `lost` first, so none is made after it.
      const interrupted = new Promise<never>((_, reject) => {
        const stop = () => {
          const err = new RefreshInterrupted();
          lost ??= err;
          reject(err);
        };
        if (signal.aborted) stop();
        else signal.addEventListener('abort', stop, { once: true });
      });
      comparing.catch(() => {});
      result = await Promise.race([comparing, interrupted]);
    } else result = await comparing;
    return { ...result, diagnostics };
  } finally {
    clearInterval(beat);
    await handle?.release().catch(() => {});
  }
}

/**
 * Why a booted VM (the record holds it in a state an `awaitReady` edge
 * enters: Running) is powered off in its cloud, for its drift line: an
 * in-guest reboot whose boot the authority denied (the VM's newest history
 * row says so: the agent presented its last boot's token, used already, and
 * powered the VM off), or a power-off from inside the guest or by the cloud.
 * Undefined for any other difference. Its disk and cloud VM are kept; only
 * an approved `boot` edge (the next apply's) gives it its disk key again
 * (docs/recovery.md, "In-guest reboots and power-offs").
 */
async function poweredOffWhy(record: FleetRecord, lc: Lifecycle, stack: string, vm: VmRow, a: ActualVm, write: boolean): Promise<string | undefined> {
  if (a.status !== 'present' || a.power !== 'off') return undefined;
  if (!lc.edges.some((e) => e.to === vm.state && e.operation === 'awaitReady')) return undefined;
  const last = (await record.history(stack, vm.address, { limit: 1 })).filter((h) => h.vmId === vm.id).at(-1);
  const what =
    last?.outcome === 'denied' && last.detail?.startsWith('boot denied')
      ? `It powered itself off after a reboot from inside its guest: its agent asked for its disk key again with its last boot's token and was denied (${last.detail}), as a VM gets its disk key only through an approved boot`
      : `It was powered off from inside its guest (a halt, or a reboot whose boot was denied) or by its cloud`;
  const next = write ? '`fleet apply` boots it again' : '`fleet refresh` (or `fleet plan --refresh`), then `fleet apply`, boots it again';
  return `${what}. Its disk and cloud VM ${clip(a.cloudId)} are kept: ${next} along an approved boot edge, with a fresh boot token`;
}

/**
 * Of `vms` (one data center's), those in a failure state with a cloud id that
 * their cloud holds in another state and whose latest boot the authority
 * denied (FleetRecord.deniedBoots). refresh keeps them in their failure
 * state: the record's BootFailed is the truth that the VM may not boot again
 * (a denied VM whose driver could not delete it, powered off by its agent),
 * and the planner reads a denial only in a failure state (engine/plan/run.ts
 * markDeniedBoots). One query, of those few VMs only; none when there are none.
 */
async function deniedInCloud(record: FleetRecord, lc: Lifecycle, vms: readonly VmRow[], byId: ReadonlyMap<string, ActualVm>, skipped: ReadonlySet<string>): Promise<Set<string>> {
  const failure = new Set(lc.failure);
  const ids = vms
    .filter((v) => failure.has(v.state) && v.cloudId !== null && !skipped.has(v.fleet) && v.retiredAt === null)
    .filter((v) => {
      const a = byId.get(v.id);
      return a !== undefined && a.observedState !== v.state;
    })
    .map((v) => v.id);
  if (ids.length === 0) return new Set();
  return new Set(await record.deniedBoots(ids, bootedStates(lc)));
}

/** The comparison itself, for the VMs of fleets not in `skipped`; `stillHeld` throws once a lock was lost, before each write. */
async function compare(session: StackSession, vms: readonly VmRow[], skipped: ReadonlySet<string>, write: boolean, actor: string, stillHeld: () => void): Promise<RefreshResult> {
  const { stack, pack } = session;
  const record = session.record;
  const lc = pack.lifecycle;
  const opts = { actor };
  const drift: DriftEntry[] = [];
  let checked = 0;
  const writing = () => {
    if (write) stillHeld();
    return write;
  };

  await Promise.all(
    stack.dataCenters.map(async (dc) => {
      const provider = session.providers.get(dc.name);
      if (!provider) return;
      let actual: ActualVm[];
      try {
        actual = await provider.listVms();
      } catch (err) {
        const first = err instanceof FleetError ? err.diagnostics[0] : undefined;
        const detail = first ? first.detail : String(err);
        drift.push({ kind: 'unreachable', dataCenter: dc.name, address: dc.name, recordState: null, actualState: null, detail, ...(first ? { code: first.code } : {}) });
        return;
      }
      const byId = new Map(actual.filter((a) => a.status === 'present').map((a) => [a.vmId, a]));
      const mine = vms.filter((v) => v.dataCenter === dc.name);
      const denied = await deniedInCloud(record, lc, mine, byId, skipped);
      for (let vm of mine) {
        if (skipped.has(vm.fleet)) {
          // Left alone (an apply holds it); its VM is known, not `unknown`.
          byId.delete(vm.id);
          continue;
        }
        checked++;
        const a = byId.get(vm.id);
        byId.delete(vm.id);
        /** A difference no diagram path records: reported as drift, noted in the VM's history when the refresh writes. */
        const notAnEdge = async (observed: string, detail: string, history: string) => {
          drift.push({ kind: 'not-an-edge', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: observed, detail });
          if (writing()) await record.addHistory(vm.id, { from: vm.state, to: vm.state, outcome: 'drift', actor: opts.actor, detail: `refresh: ${dc.name} reports ${clip(observed)}, ${history}` });
        };
        if (!a) {
          // Before createVm has run there is nothing in the cloud to find.
          if (vm.cloudId === null || lc.isTerminal(vm.state)) continue;
          const what = `the record holds ${vm.address} (${vm.cloudId}) in ${vm.state}, but ${dc.name} has no such VM`;
          if (writing()) {
            const recorded = await recordMissing(record, lc, vm, { actor: opts.actor, why: 'refresh' });
            drift.push({ kind: 'missing', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: null, detail: `${what}; recorded ${recorded}` });
          } else {
            const { to } = missingOutcome(lc, vm.state);
            drift.push({ kind: 'missing', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: null, detail: `${what}; \`fleet refresh\` would record ${to}` });
          }
          continue;
        }
        if (vm.cloudId === null && !lc.isTerminal(vm.state)) {
          // Its data center holds a VM of its VM id whose cloud id the record lacks: that VM is this one (recordCloudId).
          if (writing()) {
            vm = await recordCloudId(record, vm, a, { actor: opts.actor, why: 'refresh' });
            drift.push({ kind: 'recorded', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: a.observedState, detail: `recorded its cloud id ${clip(a.cloudId)}, which the record did not hold` });
          } else {
            drift.push({
              kind: 'edge',
              dataCenter: dc.name,
              address: vm.address,
              recordState: vm.state,
              actualState: a.observedState,
              detail: `${dc.name} holds VM ${clip(a.cloudId)} of it, whose cloud id the record does not hold; \`fleet refresh\` would record it`,
            });
          }
        }
        if (a.observedState === vm.state) continue;
        if (denied.has(vm.id)) {
          // Its boot was denied: recording BootFailed -> PoweredOff (or on) would take it out of the failure state
          // the plan's recreate reads (FleetRecord.deniedBoots is asked of failure states only), and the next apply
          // would boot the VM the authority refused, same disk, with a fresh token.
          await notAnEdge(
            a.observedState,
            `${dc.name} reports ${clip(a.observedState)} but the record holds ${vm.state}, and the authority denied its latest boot (its DMZ client reported it driver.boot-denied): ` +
              `kept in ${vm.state}, so \`fleet apply\` deletes VM ${clip(a.cloudId)} and creates ${vm.address} again rather than boot it again (docs/recovery.md, "A denied VM its data center still holds")`,
            `its latest boot denied by the authority; kept in ${vm.state}, to be deleted and created again`,
          );
          continue;
        }
        // One edge, or several along the diagram's path (never into a failure
        // state): recorded edge by edge, each a history row, so the next plan
        // starts from the observed state.
        const decided = driftPath(lc, vm.state, a.observedState, a.agent);
        const path = 'path' in decided ? decided.path : undefined;
        if (path && !lc.isTerminal(a.observedState)) {
          const edges = path.length - 1;
          const walk = path.join(' -> ');
          const offWhy = await poweredOffWhy(record, lc, stack.name, vm, a, write);
          const more = offWhy ? `. ${offWhy}` : '';
          drift.push(
            write
              ? { kind: 'recorded', dataCenter: dc.name, address: vm.address, recordState: vm.state, actualState: a.observedState, detail: `recorded ${walk}${more}` }
              : {
                  kind: 'edge',
                  dataCenter: dc.name,
                  address: vm.address,
                  recordState: vm.state,
                  actualState: a.observedState,
                  detail: `${dc.name} reports ${clip(a.observedState)}, ${edges === 1 ? `one edge from ${vm.state}` : `${edges} edges from ${vm.state} (${walk})`}; \`fleet refresh\` would record it${more}`,
                },
          );
          if (writing()) {
            let version = vm.version;
            for (let i = 1; i < path.length; i++) {
              const why = edges === 1 ? '' : ` (edge ${i} of ${edges} along ${walk})`;
              version = (await record.transitionVm(vm.id, version, path[i], { actor: opts.actor, outcome: 'drift', detail: `refresh: ${dc.name} reports ${clip(a.observedState)}${why}` })).version;
            }
          }
        } else if ('refused' in decided && decided.refused === 'unapproved-boot' && a.agent === 'unknown' && !bootStates(lc).includes(a.observedState)) {
          await notAnEdge(
            a.observedState,
            `${dc.name} reports ${clip(a.observedState)} but the record holds ${vm.state}, and ${dc.name}'s DMZ client holds no report of its agent: nothing says a boot the authority approved brought it there ` +
              `(recording ${vm.state} -> … -> ${clip(a.observedState)} would pass the boot edges without one); left as is. \`fleet apply\` powers it off and boots it along an approved boot edge`,
            'running with no agent report; not recorded',
          );
        } else if ('refused' in decided && decided.refused === 'unapproved-boot') {
          const doing = a.observedState === 'Starting' || a.agent === 'booting' ? 'booting' : 'powered on';
          await notAnEdge(
            a.observedState,
            `${dc.name} reports ${clip(a.observedState)} but the record holds ${vm.state}: the VM is ${doing} without a boot edge the authority approved ` +
              `(a reboot from inside its guest, or a start from the cloud's console); left as is, as recording it would let the boot endpoint answer its last boot's token again. ` +
              `${doing === 'booting' ? 'Its agent is denied its disk key and powers it off' : 'It gets no disk key'}; run \`fleet refresh\` again once it settled, then \`fleet apply\` boots it along an approved boot edge`,
            'a boot no approved edge started; not recorded',
          );
        } else {
          await notAnEdge(
            a.observedState,
            `${dc.name} reports ${clip(a.observedState)} but the record holds ${vm.state}, and ${vm.state} -> ${clip(a.observedState)} is not an edge of the diagram; left as is`,
            `not an edge from ${vm.state}`,
          );
        }
      }
      const unknown = [...byId.values()];
      // The record's rows of those VM ids, retired ones too (one read): a VM forgotten by `fleet state rm` is named
      // with the member it was, and the import that takes it back.
      const rows = unknown.length > 0 ? await record.getVms(unknown.map((a) => a.vmId)) : [];
      // The live VM now at the member each retired one was (made again since), if any.
      const lives = await Promise.all(rows.map((r) => (r && r.stack === stack.name && r.retiredAt ? record.findVm(stack.name, r.address) : undefined)));
      unknown.forEach((a, i) => {
        drift.push({
          kind: 'unknown',
          dataCenter: dc.name,
          address: clip(a.cloudId),
          recordState: null,
          actualState: a.observedState,
          detail: `${dc.name} runs ${clip(a.name)} (${clip(a.cloudId)}, VM id ${clip(a.vmId)}) that the record does not know${adoptHint(stack.name, a, rows[i], lives[i], rows[i] ? session.fleets.find((f) => f.name === rows[i]!.fleet)?.count : undefined)}`,
        });
      });
    }),
  );
  drift.sort((a, b) => a.dataCenter.localeCompare(b.dataCenter) || a.address.localeCompare(b.address, 'en', { numeric: true }));
  return { checked, drift };
}

/**
 * The way out of an `unknown` VM: `fleet import` adopts it (docs/apply.md, "Forgetting and adopting a VM"). A VM
 * this stack's record retired (forgotten by `fleet state rm`, or recorded gone and back since) is named with the
 * member it was, whose import takes it back as it was (its record id is the cloud VM's).
 */
function adoptHint(stack: string, a: ActualVm, row: VmRow | undefined, live: VmRow | undefined, count: number | undefined): string {
  if (row && row.stack === stack && row.retiredAt && !(count !== undefined && row.index < count)) {
    // No member of the specs now (its fleet's count lowered below it, or the fleet gone from the specs): `fleet
    // import` refuses it there. Before, the hint named that import.
    const why = count === undefined ? `fleet ${row.fleet} is not in the specs` : `fleet ${row.fleet} has count ${count}`;
    return `; it was ${row.address}, ${row.state} when the record retired it at ${row.retiredAt}, which is no member now (${why}), so \`fleet import\` would refuse it: delete it in its data center, or raise the count to take it back with \`fleet import ${row.address} ${clip(a.cloudId)}\` (the next plan then deletes it when the count is lowered again)`;
  }
  if (row && row.stack === stack && row.retiredAt && live && live.id !== row.id) {
    // Its member was made again since (the record retired it as gone, Deleted): `fleet import` of it is refused
    // (the member is live), and no plan acts on a VM the record does not hold. Before, the hint named that import.
    return `; it was ${row.address}, ${row.state} when the record retired it at ${row.retiredAt}, and ${row.address} is live again as VM ${live.id}${live.cloudId ? ` (${live.cloudId})` : ''}, so \`fleet import\` would refuse it: delete it in its data center (no fleet command deletes a VM the record does not hold)`;
  }
  if (row && row.stack === stack && row.retiredAt) {
    return `; it was ${row.address}, ${row.state} when the record retired it at ${row.retiredAt}: \`fleet import ${row.address} ${clip(a.cloudId)}\` adopts it again, or delete it in its data center`;
  }
  return `; \`fleet import ADDRESS ${clip(a.cloudId)}\` adopts it into a free member of a fleet, or delete it in its data center`;
}

/** Above this many VMs in one data center, checkCloud lists the data center once instead of asking for each VM. */
const GET_EACH_LIMIT = 16;

/**
 * Records the cloud id of a VM whose record holds none while its data center holds a present VM of its VM id (a
 * create whose report was lost, a VM recorded missing that its cloud lists again): the record's VM id is the one
 * createVm was given, so that VM is this one. Without it the authority denied the VM's next boot (`cloud id … does
 * not match the record's none`) and the plan replaced a healthy VM, or a VM the apply brought to Running kept no
 * cloud id. Returns the row written.
 */
export async function recordCloudId(record: FleetRecord, vm: VmRow, a: ActualVm, ctx: { actor: string; why: string }): Promise<VmRow> {
  // One statement writes the row and its history row (transitionVm to the state it is in), as recordMissing does.
  return record.transitionVm(
    vm.id,
    vm.version,
    vm.state,
    { actor: ctx.actor, outcome: 'drift', detail: `${ctx.why}: ${vm.dataCenter} holds VM ${clip(a.cloudId)} of it (${clip(a.observedState)}), whose cloud id the record did not hold; recorded` },
    { cloudId: a.cloudId },
  );
}

/**
 * Before fleet apply carries a fresh plan out (under its locks): are the
 * VMs the plan acts on still in their data centers, as the record holds
 * them? A VM that is gone (a boot denied and the VM terminated, a VM
 * deleted by hand) is recorded as missingOutcome says, so the plan made
 * again recovers it (delete and create again, or create again) instead of
 * failing at its first cloud call. A VM its data center holds while the
 * record has no cloud id of it gets its cloud id (recordCloudId). A VM the
 * record holds in a boot state (PoweredOn, Starting) that its cloud shows
 * powered off, one edge away (PoweredOn -> PoweredOff), has that edge
 * recorded (outcome `drift`): the plan's boot from there failed at every
 * apply (`VM … is powered off; power it on before booting`), and leaving a
 * boot state never lets a boot through. A VM the record holds in a boot
 * state whose boot is over in its cloud (its agent failed, or the VM powered
 * off with no edge back) has the edge into the failure state recorded
 * (`drift`), so the plan made again recovers it instead of awaiting a boot
 * that ended. A data center that does not answer is left out (the apply
 * fails there with its own diagnostic). Returns what was recorded: `missing`
 * (apply.vm-missing) and `recorded` (apply.vm-drift).
 */
export async function checkCloud(session: StackSession, vms: readonly VmRow[], opts: { actor: string }): Promise<DriftEntry[]> {
  const lc = session.pack.lifecycle;
  const booting = bootStates(lc);
  const out: DriftEntry[] = [];
  const byDc = new Map<string, VmRow[]>();
  for (const vm of vms) {
    if (lc.isTerminal(vm.state)) continue;
    const list = byDc.get(vm.dataCenter) ?? [];
    list.push(vm);
    byDc.set(vm.dataCenter, list);
  }
  const why = 'apply found it so';
  await Promise.all(
    [...byDc].map(async ([dc, list]) => {
      const provider = session.providers.get(dc);
      if (!provider) return;
      let found: (vm: VmRow) => Promise<ActualVm | undefined>;
      try {
        if (list.length > GET_EACH_LIMIT) {
          const byId = new Map((await provider.listVms()).filter((a) => a.status === 'present').map((a) => [a.vmId, a]));
          found = async (vm) => byId.get(vm.id);
        } else {
          found = async (vm) => {
            const a = await provider.getVm(vm.id);
            return a?.status === 'present' ? a : undefined;
          };
        }
        for (let vm of list) {
          const a = await found(vm);
          if (!a) {
            // Before createVm has run there is nothing in the cloud to find.
            if (vm.cloudId === null) continue;
            const recorded = await recordMissing(session.record, lc, vm, { actor: opts.actor, why: 'apply found it missing' });
            out.push({ kind: 'missing', dataCenter: dc, address: vm.address, recordState: vm.state, actualState: null, detail: `${dc} has no VM ${vm.cloudId}; recorded ${recorded}` });
            continue;
          }
          const notes: string[] = [];
          if (vm.cloudId === null) {
            vm = await recordCloudId(session.record, vm, a, { actor: opts.actor, why });
            notes.push(`${dc} holds VM ${clip(a.cloudId)} of it, whose cloud id the record did not hold: recorded`);
          } else if (a.cloudId !== vm.cloudId) {
            continue;
          }
          const from = vm.state;
          if (booting.includes(from) && a.power === 'off' && lc.allows(from, a.observedState) && !booting.includes(a.observedState) && !lc.failure.includes(a.observedState) && !lc.isTerminal(a.observedState)) {
            await session.record.transitionVm(vm.id, vm.version, a.observedState, { actor: opts.actor, outcome: 'drift', detail: `${why}: ${dc} reports ${a.observedState} (powered off), one edge from ${from}` });
            notes.push(`${dc} shows it ${a.observedState} (powered off) while the record held ${from}: recorded ${from} -> ${a.observedState}`);
          } else if (booting.includes(from) && (a.agent === 'failed' || a.power === 'off')) {
            // A boot that ended while no apply awaited it (the apply that started it killed, or its record gone past
            // the agent's boot window): its agent gave up (and powered the VM off, as agent.sh does), or the VM was
            // powered off mid-boot. The plan's awaitReady from here failed at once with that old failure, and only
            // the apply after recovered it; recorded in the failure state one edge away, this apply recovers it along
            // the pack's recovery edges with a fresh boot (or replaces it, its boot denied: the record says so).
            const failed = lc.failure.find((f) => lc.allows(from, f));
            if (failed !== undefined) {
              const how = a.agent === 'failed' ? `its agent reports the boot failed${a.power === 'off' ? ', powered off' : ''}` : 'powered off mid-boot';
              vm = await session.record.transitionVm(vm.id, vm.version, failed, { actor: opts.actor, outcome: 'drift', detail: `${why}: ${dc} shows it ${clip(a.observedState)} (${how}) while the record held ${from}` });
              notes.push(`${dc} shows it ${clip(a.observedState)} (${how}) while the record held ${from}: recorded ${from} -> ${failed}`);
            }
          }
          if (notes.length > 0) {
            out.push({ kind: 'recorded', dataCenter: dc, address: vm.address, recordState: from, actualState: a.observedState, detail: notes.join('; ') });
          }
        }
      } catch {
        // Unreachable, or the VM moved meanwhile: the apply reports its own failure there.
      }
    }),
  );
  out.sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }));
  return out;
}
