// The dashboard's pages: pure functions from what was read of the record to
// HTML (golden-tested). Read-only by design: no page changes anything; the
// CLI and the authority's API are where changes happen.
import { parseVmAddress } from '../model/index.ts';
import { html, raw, type Html } from './html.ts';

export interface UiVm {
  id: string;
  address: string;
  fleet: string;
  index: number;
  dataCenter: string;
  state: string;
  desiredState: string;
  image: string;
  realImage: string | null;
  size: { cpu: number; memoryGiB: number; diskGiB: number };
  encryptedDisk: boolean;
  cloudId: string | null;
  version: number;
  updatedAt: string;
  deposed: boolean;
}

export interface UiHistory {
  at: string;
  address: string;
  from: string | null;
  to: string;
  actor: string;
  planId: string | null;
  outcome: string;
  detail: string | null;
  /** The error code of a DMZ client's failure report (history.code, e.g. `driver.boot-denied`); null on every other row. */
  code: string | null;
}

export interface UiLock {
  fleet: string;
  lockId: string;
  who: string;
  host: string;
  pid: number;
  planId: string | null;
  since: string;
  expiresAt: string;
  /** The lock's fencing token, when the record keeps one. */
  fencingToken?: number;
  /** Its holder no longer runs on this host (holderGone): the next apply breaks the lock. */
  holderGone?: true;
}

export interface UiPlan {
  id: string;
  who: string;
  startedAt: string;
  finishedAt: string | null;
  result: string;
  digest: string;
  /** `running`, but no live apply holds it (record-source.ts): it was killed; the next apply of its fleets records it interrupted. */
  holderGone?: true;
}

export interface UiJournal {
  address: string;
  seq: number;
  from: string;
  to: string;
  status: string;
  detail: string | null;
  at: string;
}

/** Live VMs of one fleet, data center and state (the overview's cells). */
export interface UiVmCount {
  fleet: string;
  dataCenter: string;
  state: string;
  vms: number;
}

/**
 * What the overview reads (UiSource.overview): how many fleets have live VMs, the stack's live VMs per data center,
 * and the counts per state of one page of fleets only (counting every VM of the stack per state is what made a load
 * cost in proportion to the stack).
 */
export interface UiOverview {
  fleets: number;
  totals: { dataCenter: string; vms: number }[];
  /** The page's fleets' cells: per fleet, data center and state. */
  counts: UiVmCount[];
}

/** A page of an apply's journal and its first failed steps, with how many there are of each. */
export interface UiJournalPage {
  total: number;
  rows: UiJournal[];
  failedTotal: number;
  failed: UiJournal[];
  /** Where the pages before and after this one start (the ids of its first and last rows): the pager's links carry them. */
  firstId?: string | null;
  lastId?: string | null;
}

export interface UiBoot {
  at: string;
  approved: boolean;
  reason: string;
  dataCenter: string;
  cloudId: string | null;
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline}
header a{color:#cfe3ff;text-decoration:none}header strong{font-size:16px}header .signout{margin:0 0 0 auto}
main{padding:16px 20px;max-width:1200px}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border:1px solid #d8dde3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:0 6px;border-radius:8px;background:#e8eef7;margin:1px 2px}
.state.Running{background:#dff3e4}.state.BootFailed,.state.CreateFailed{background:#fde2e2}
.bad{color:#b00020}.muted{color:#6b7280}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;background:#fff;padding:8px 12px;border:1px solid #d8dde3}
dt{font-weight:600}dd{margin:0}
`;

/** The frame of every page: title, navigation (with a sign-out button, but on the sign-in form), content. */
export function layout(stack: string, title: string, body: Html, signOut = true): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · ${stack} · dmzfleet</title><style>${raw(STYLE)}</style></head>
<body><header><strong>dmzfleet</strong><span>stack <b data-testid="stack">${stack}</b></span>
<nav><a href="/ui">Fleets</a> · <a href="/ui/locks">Locks</a> · <a href="/ui/plans">Applies</a> · <a href="/ui/drift">Drift</a> · <a href="/ui/lifecycle">Lifecycle</a></nav>${
    signOut ? html`<form method="post" action="/ui/logout" class="signout"><button type="submit">Sign out</button></form>` : ''
  }</header>
<main>${body}</main></body></html>
`;
}

const stateTag = (s: string) => html`<span class="state ${s}">${s}</span>`;
const vmHref = (fleet: string, index: number) => `/ui/vms/${encodeURIComponent(fleet)}/${index}`;
const fleetHref = (fleet: string) => `/ui/fleets/${encodeURIComponent(fleet)}`;
const planHref = (id: string) => `/ui/plans/${encodeURIComponent(id)}`;

/**
 * Fleets × data centers × states, then locks, the last applies and the last drift found. The table lists page `page`
 * (from 1, at most overviewPages(overview.fleets)) of the stack's fleets, OVERVIEW_PAGE_SIZE of them in name order,
 * whose counts `overview.counts` holds, with links to the pages before and after when there are several. The summary's
 * VMs, fleets and data centers, the data center columns and the sections below are the whole stack's on every page
 * (`overview.totals`); its states are the listed fleets': the stack's when one page lists them all.
 */
export function overviewPage(stack: string, overview: UiOverview, locks: readonly UiLock[], plans: readonly UiPlan[], drift: readonly UiHistory[] = [], page = 1, lockedFleets: Iterable<string> = locks.map((l) => l.fleet)): Html {
  // From the record's sums, never its VMs (a stack may hold 1 000 000 VMs, and the authority serves this page on the
  // event loop that answers its DMZ clients): the stack's totals per data center, and the cells of this page's fleets.
  const dcSet = new Set<string>();
  let vms = 0;
  for (const { dataCenter, vms: n } of overview.totals) {
    vms += n;
    dcSet.add(dataCenter);
  }
  const dcs = [...dcSet].sort();
  const states = new Map<string, number>();
  for (const { state, vms: n } of overview.counts) states.set(state, (states.get(state) ?? 0) + n);
  const shown = [...new Set(overview.counts.map((c) => c.fleet))].sort().slice(0, OVERVIEW_PAGE_SIZE);
  const perFleet = new Map<string, { total: number; byDc: Map<string, Map<string, number>> }>(shown.map((f) => [f, { total: 0, byDc: new Map() }]));
  for (const { fleet, dataCenter, state, vms: n } of overview.counts) {
    const f = perFleet.get(fleet);
    if (!f) continue;
    f.total += n;
    let cell = f.byDc.get(dataCenter);
    if (!cell) f.byDc.set(dataCenter, (cell = new Map()));
    cell.set(state, (cell.get(state) ?? 0) + n);
  }
  const locked = new Set(lockedFleets);
  const cell = (fleet: string, dc: string) =>
    [...(perFleet.get(fleet)?.byDc.get(dc) ?? [])].sort().map(([s, n]) => html`<span class="state ${s}" data-state="${s}" data-count="${n}">${s} ${n}</span>`);
  const pager = pagerLine('/ui', 'fleets', page, OVERVIEW_PAGE_SIZE, overview.fleets);
  const rows = shown.map((f) => {
    const total = perFleet.get(f)?.total ?? 0;
    return html`<tr data-fleet="${f}"><td><a href="${fleetHref(f)}">${f}</a>${locked.has(f) ? html` <span class="muted" data-testid="locked">(locked)</span>` : ''}</td>${dcs.map((dc) => html`<td data-dc="${dc}">${cell(f, dc)}</td>`)}<td class="num" data-testid="total">${total}</td></tr>`;
  });
  return layout(
    stack,
    'Fleets',
    html`<h1>Fleets</h1>
<p data-testid="summary">${vms} VMs in ${overview.fleets} fleets over ${dcs.length} data centers${
      overview.fleets > shown.length ? html`; the ${shown.length} fleets of this page` : ''
    }: ${[...states].sort().map(([s, n]) => html`${stateTag(s)} ${n} `)}</p>
${
  overview.fleets === 0
    ? html`<p class="muted">The record holds no VMs for this stack yet. Run <code>fleet apply</code>.</p>`
    : html`${pager}<table id="fleets"><thead><tr><th>fleet</th>${dcs.map((dc) => html`<th>${dc}</th>`)}<th class="num">VMs</th></tr></thead><tbody>${rows}</tbody></table>${pager}`
}
<h2>Locks</h2>${locksTable(locks, OVERVIEW_LOCKS)}
<h2>Recent applies</h2>${plansTable(plans.slice(0, 10))}
<h2>Last drift</h2>${driftTable(drift.slice(0, 10))}`,
  );
}

/** Drift rows, newest first: what `fleet refresh` found and wrote (`fleet refresh --check` writes nothing, so its findings are not here). */
export function driftTable(drift: readonly UiHistory[]): Html {
  if (drift.length === 0) return html`<p class="muted" data-testid="no-drift">The record holds no drift: no <code>fleet refresh</code> found a VM differing from it.</p>`;
  return html`<table id="drift"><thead><tr><th>when</th><th>member</th><th>record → found</th><th>who</th><th>detail</th></tr></thead><tbody>${drift.map(
    (d) => html`<tr data-address="${d.address}"><td>${d.at}</td><td>${memberLink(d.address)}</td><td>${d.from ?? '∅'} → ${d.to}</td><td>${d.actor}</td><td>${detailOf(d)}</td></tr>`,
  )}</tbody></table>`;
}

/**
 * A history row's detail, led by its error code in brackets when a DMZ client reported one (`[driver.boot-denied] …`),
 * as `fleet history` shows it: a denied boot (the next apply recreates the VM) told from another failure.
 */
function detailOf(h: UiHistory): Html {
  if (!h.code) return html`${h.detail ?? ''}`;
  return h.detail ? html`<code>[${h.code}]</code> ${h.detail}` : html`<code>[${h.code}]</code>`;
}

export function driftPage(stack: string, drift: readonly UiHistory[]): Html {
  return layout(stack, 'Drift', html`<h1>Drift</h1><p class="muted">Newest first. Run <code>fleet refresh</code> to compare the record with the data centers again.</p>${driftTable(drift)}`);
}

/** Locks listed on the overview, and on the locks page: an apply of every fleet of a stack holds a lock per fleet. */
export const OVERVIEW_LOCKS = 20;
export const LOCKS_LISTED = 500;

/** `locks` by fleet name, the first `max` of them, saying so when there are more (`locks` holds one more, then). */
export function locksTable(all: readonly UiLock[], max = LOCKS_LISTED): Html {
  if (all.length === 0) return html`<p class="muted" data-testid="no-locks">No fleet is locked.</p>`;
  const locks = all.slice(0, max);
  const more =
    all.length > max
      ? html`<p class="muted" data-testid="more-locks">More than ${max} fleets are locked; these are the first ${max} by name${max < LOCKS_LISTED ? html` (<a href="/ui/locks">the locks page</a> lists ${LOCKS_LISTED})` : ''}. <code>fleet state list</code> shows every lock.</p>`
      : '';
  return html`${more}<table id="locks"><thead><tr><th>fleet</th><th>holder</th><th>plan</th><th>since</th><th>lease expires</th><th>fencing token</th><th>lock id</th></tr></thead><tbody>${locks.map(
    (l) =>
      html`<tr data-fleet="${l.fleet}"><td>${l.fleet}</td><td data-testid="holder">${l.who} (pid ${l.pid} on ${l.host})${l.holderGone ? html` <span class="bad" data-testid="holder-gone">holder gone: the next apply breaks it</span>` : ''}</td><td>${l.planId ? html`<a href="${planHref(l.planId)}">${l.planId}</a>` : '—'}</td><td>${l.since}</td><td>${l.expiresAt}</td><td class="num">${l.fencingToken ?? '—'}</td><td><code>${l.lockId}</code></td></tr>`,
  )}</tbody></table><p class="muted">Release a lock whose holder is gone with <code>fleet unlock LOCKID</code>.</p>`;
}

/** An apply's result; a `running` one no live apply holds says its holder is gone (killed), as `fleet state list` says of locks. */
function resultOf(p: UiPlan): Html | string {
  return p.holderGone ? html`running <span data-testid="holder-gone">(holder gone: killed; the next apply of its fleets records it interrupted)</span>` : p.result;
}

export function plansTable(plans: readonly UiPlan[]): Html {
  if (plans.length === 0) return html`<p class="muted">No apply yet.</p>`;
  return html`<table id="plans"><thead><tr><th>plan</th><th>who</th><th>started</th><th>finished</th><th>result</th></tr></thead><tbody>${plans.map(
    (p) =>
      html`<tr data-plan="${p.id}"><td><a href="${planHref(p.id)}">${p.id}</a></td><td>${p.who}</td><td>${p.startedAt}</td><td>${p.finishedAt ?? '—'}</td><td class="${p.result === 'failed' || p.holderGone ? 'bad' : ''}">${resultOf(p)}</td></tr>`,
  )}</tbody></table>`;
}

export function locksPage(stack: string, locks: readonly UiLock[]): Html {
  return layout(stack, 'Locks', html`<h1>Locks</h1>${locksTable(locks, LOCKS_LISTED)}`);
}

export function plansPage(stack: string, plans: readonly UiPlan[]): Html {
  return layout(stack, 'Applies', html`<h1>Applies</h1>${plansTable(plans)}`);
}

/** Fleets listed on one page of the overview (`/ui?page=N`): a stack may have thousands, over tens of data centers. */
export const OVERVIEW_PAGE_SIZE = 200;
/** Members shown on one page of a fleet (`/ui/fleets/FLEET?page=N`): a fleet may have 100 000. */
export const FLEET_PAGE_SIZE = 500;
/** Journal rows shown on one page of an apply (`/ui/plans/ID?page=N`): an apply of 100 000 VMs journals over a million. */
export const JOURNAL_PAGE_SIZE = 1000;
/** Failed steps listed at the top of an apply's page; the rest are counted (and are in its journal's pages). */
export const MAX_FAILURES_LISTED = 100;

/** How many pages `rows` rows take, `size` a page (none: one page, saying so). */
export function pageCount(rows: number, size: number): number {
  return Math.max(1, Math.ceil(rows / size));
}

/** How many pages the overview of a stack of `fleets` fleets has. */
export function overviewPages(fleets: number): number {
  return pageCount(fleets, OVERVIEW_PAGE_SIZE);
}

/**
 * The overview of these counts (per fleet, data center and state, in any order) as UiSource.overview answers it: the
 * definition the record's countVmsPage meets, for tests and sources that hold their counts in memory.
 */
export function overviewOf(counts: readonly UiVmCount[], offset: number, limit: number): UiOverview {
  const fleets = [...new Set(counts.filter((c) => c.vms > 0).map((c) => c.fleet))].sort();
  const shown = new Set(fleets.slice(offset, offset + limit));
  const totals = new Map<string, number>();
  for (const c of counts) if (c.vms > 0) totals.set(c.dataCenter, (totals.get(c.dataCenter) ?? 0) + c.vms);
  return {
    fleets: fleets.length,
    totals: [...totals.keys()].sort().map((dataCenter) => ({ dataCenter, vms: totals.get(dataCenter)! })),
    counts: counts.filter((c) => c.vms > 0 && shown.has(c.fleet)),
  };
}

/** How many pages a fleet of `members` members has. */
export function fleetPages(members: number): number {
  return pageCount(members, FLEET_PAGE_SIZE);
}

/**
 * `members 501–1000 of 1201 (page 2 of 3) · ← page 1 · page 3 →`, or nothing when all fit on one page. `cursor`: the
 * query the link to the page before (after) adds to its page number, so that page is read from where this one starts
 * (ends) instead of skipping every row before it.
 */
function pagerLine(href: string, what: string, page: number, size: number, total: number, cursor?: { before?: string; after?: string }): Html | '' {
  const pages = pageCount(total, size);
  if (pages <= 1) return '';
  const start = (page - 1) * size;
  const end = Math.min(total, start + size);
  const to = (n: number) => `${href}?page=${n}${n > 1 && n === page - 1 && cursor?.before ? `&before=${cursor.before}` : ''}${n === page + 1 && cursor?.after ? `&after=${cursor.after}` : ''}`;
  return html`<p data-testid="pager">${what} ${start + 1}–${end} of ${total} (page ${page} of ${pages})${
    page > 1 ? html` · <a href="${to(page - 1)}" rel="prev">← page ${page - 1}</a>` : ''
  }${page < pages ? html` · <a href="${to(page + 1)}" rel="next">page ${page + 1} →</a>` : ''}</p>`;
}

/**
 * Page `page` (from 1, at most fleetPages(total)) of a fleet of `total` members: `members` are that page's, as the
 * record orders them (by index, a current VM before the old one it replaces); links to the pages before and after when
 * there are several.
 */
export function fleetPage(stack: string, fleet: string, members: readonly UiVm[], total: number, lock: UiLock | undefined, page = 1): Html {
  const sorted = members.slice(0, FLEET_PAGE_SIZE);
  const pager = pagerLine(fleetHref(fleet), 'members', page, FLEET_PAGE_SIZE, total);
  return layout(
    stack,
    `Fleet ${fleet}`,
    html`<h1>Fleet ${fleet}</h1>
${lock ? html`<p data-testid="fleet-lock">Locked by ${lock.who} (pid ${lock.pid} on ${lock.host}) since ${lock.since}.</p>` : ''}
${pager}
${
  sorted.length === 0
    ? html`<p class="muted">No live member.</p>`
    : html`<table id="members"><thead><tr><th>member</th><th>state</th><th>desired</th><th>data center</th><th>image</th><th>size</th><th>cloud id</th><th>updated</th></tr></thead><tbody>${sorted.map(
        (v) =>
          html`<tr data-address="${v.address}"><td><a href="${vmHref(v.fleet, v.index)}">${v.address}</a>${v.deposed ? html` <span class="muted">(old VM of a replace)</span>` : ''}</td><td>${stateTag(v.state)}</td><td>${v.desiredState}</td><td>${v.dataCenter}</td><td>${v.image}</td><td>${v.size.cpu} CPU / ${v.size.memoryGiB} GiB</td><td><code>${v.cloudId ?? '—'}</code></td><td>${v.updatedAt}</td></tr>`,
      )}</tbody></table>${pager}`
}`,
  );
}

export function vmPage(stack: string, vm: UiVm, history: readonly UiHistory[], boots: readonly UiBoot[]): Html {
  return layout(
    stack,
    vm.address,
    html`<h1>${vm.address}</h1>
<p><a href="${fleetHref(vm.fleet)}">← fleet ${vm.fleet}</a></p>
<dl id="vm"><dt>state</dt><dd data-testid="state">${stateTag(vm.state)}</dd><dt>desired</dt><dd>${vm.desiredState}</dd><dt>data center</dt><dd>${vm.dataCenter}</dd>
<dt>image</dt><dd>${vm.image}${vm.realImage ? html` → <code>${vm.realImage}</code>` : ''}</dd><dt>size</dt><dd>${vm.size.cpu} CPU / ${vm.size.memoryGiB} GiB / ${vm.size.diskGiB} GiB disk</dd>
<dt>encrypted disk</dt><dd>${vm.encryptedDisk ? 'yes' : 'no'}</dd><dt>cloud id</dt><dd><code>${vm.cloudId ?? '—'}</code></dd><dt>VM id</dt><dd><code>${vm.id}</code></dd><dt>version</dt><dd>${vm.version}</dd></dl>
<h2>History</h2>
${
  history.length === 0
    ? html`<p class="muted">No history.</p>`
    : html`<table id="history"><thead><tr><th>when</th><th>change</th><th>outcome</th><th>who</th><th>plan</th><th>detail</th></tr></thead><tbody>${history.map(
        (h) =>
          html`<tr><td>${h.at}</td><td>${h.from ?? '∅'} → ${h.to}</td><td class="${h.outcome === 'succeeded' || h.outcome === 'ok' ? '' : 'bad'}">${h.outcome}</td><td>${h.actor}</td><td>${h.planId ? html`<a href="${planHref(h.planId)}">${h.planId}</a>` : '—'}</td><td>${detailOf(h)}</td></tr>`,
      )}</tbody></table>`
}
<h2>Boot attempts</h2>
${
  boots.length === 0
    ? html`<p class="muted">No boot attempt.</p>`
    : html`<table id="boots"><thead><tr><th>when</th><th>decision</th><th>reason</th><th>cloud id</th></tr></thead><tbody>${boots.map(
        (b) => html`<tr><td>${b.at}</td><td class="${b.approved ? '' : 'bad'}">${b.approved ? 'approved' : 'denied'}</td><td>${b.reason}</td><td><code>${b.cloudId ?? '—'}</code></td></tr>`,
      )}</tbody></table>`
}`,
  );
}

/** How many pages an apply's journal of `rows` rows has. */
export function journalPages(rows: number): number {
  return pageCount(rows, JOURNAL_PAGE_SIZE);
}

/**
 * An apply: its first failures (MAX_FAILURES_LISTED, the rest counted), then page `page` (from 1) of its journal, which
 * `journal.rows` are. `cursor`: what the links to the pages before and after carry as where they start (the server's
 * signed form of journal.firstId and lastId: a cursor edited by hand is not taken); default the ids themselves.
 */
export function planPage(stack: string, plan: UiPlan, journal: UiJournalPage, page = 1, cursor?: { before?: string; after?: string }): Html {
  const listed = journal.failed.slice(0, MAX_FAILURES_LISTED);
  const more = journal.failedTotal - listed.length;
  const rows = journal.rows.slice(0, JOURNAL_PAGE_SIZE);
  cursor ??= { ...(journal.firstId ? { before: journal.firstId } : {}), ...(journal.lastId ? { after: journal.lastId } : {}) };
  const pager = pagerLine(planHref(plan.id), 'steps', page, JOURNAL_PAGE_SIZE, journal.total, cursor);
  return layout(
    stack,
    `Apply ${plan.id}`,
    html`<h1>Apply ${plan.id}</h1>
<dl><dt>who</dt><dd>${plan.who}</dd><dt>started</dt><dd>${plan.startedAt}</dd><dt>finished</dt><dd>${plan.finishedAt ?? '—'}</dd><dt>result</dt><dd data-testid="result">${resultOf(plan)}</dd><dt>digest</dt><dd><code>${plan.digest}</code></dd></dl>
${
  journal.failedTotal
    ? html`<h2 class="bad">Failures</h2><ul>${listed.map((f) => html`<li>${f.address}: ${f.from} → ${f.to}: ${f.detail ?? 'failed'}</li>`)}</ul>${
        more > 0 ? html`<p class="muted" data-testid="more-failures">${more} more failed steps; the journal below has every one.</p>` : ''
      }`
    : ''
}
<h2>Journal</h2>
${
  journal.total === 0
    ? html`<p class="muted">No step was journalled.</p>`
    : html`${pager}<table id="journal"><thead><tr><th>member</th><th>step</th><th>status</th><th>when</th><th>detail</th></tr></thead><tbody>${rows.map(
        (j) => html`<tr><td>${memberLink(j.address)}</td><td>${j.from} → ${j.to}</td><td class="${j.status === 'failed' ? 'bad' : ''}">${j.status}</td><td>${j.at}</td><td>${j.detail ?? ''}</td></tr>`,
      )}</tbody></table>${pager}`
}`,
  );
}

function memberLink(address: string): Html {
  const a = parseVmAddress(address);
  return a ? html`<a href="${vmHref(a.fleet, a.index)}">${address}</a>` : html`${address}`;
}

export function lifecyclePage(stack: string, pack: string, svg: string): Html {
  return layout(stack, 'Lifecycle', html`<h1>Lifecycle of ${pack}</h1><p class="muted">Bold: states a fleet may ask for. Grey: terminal. Red: failure states, reached only by outcomes (dashed).</p>${raw(svg)}`);
}

/** `back`: a link nearer than the fleets (an apply's first page, for a page of its journal it does not have). */
export function notFoundPage(stack: string, what: string, back?: { href: string; text: string }): Html {
  return layout(stack, 'Not found', html`<h1>Not found</h1><p>${what}</p><p>${back ? html`<a href="${back.href}" data-testid="back">${back.text}</a> · ` : ''}<a href="/ui">Back to the fleets</a></p>`);
}

/** The first page of an apply's journal. */
export function planFirstPage(id: string): { href: string; text: string } {
  return { href: `${planHref(id)}?page=1`, text: `Page 1 of apply ${id}` };
}

/** A page asked for with a method it does not take (405): it exists, to be read. */
export function methodPage(stack: string, what: string): Html {
  return layout(stack, 'Method not allowed', html`<h1>Method not allowed</h1><p data-testid="method">${what}</p><p><a href="/ui">Back to the fleets</a></p>`);
}

export function errorPage(stack: string, what: string): Html {
  return layout(stack, 'Unavailable', html`<h1>Unavailable</h1><p class="bad" data-testid="error">${what}</p><p>Reload the page to try again.</p>`);
}

export function loginPage(stack: string, failed: boolean): Html {
  return layout(
    stack,
    'Sign in',
    html`<h1>Sign in</h1>${failed ? html`<p class="bad" data-testid="login-failed">That token is not accepted here.</p>` : ''}
<form method="post" action="/ui/login"><label>Admin or read-only token <input type="password" name="token" autocomplete="off" autofocus></label> <button type="submit">Sign in</button></form>`,
    false,
  );
}
