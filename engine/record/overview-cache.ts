// The dashboard overview's stack-wide totals (VmReader.countVmsPage): how
// many fleets have live VMs, their names in order, and the live VMs per data
// center, all summed from vm_usage. At 990,000 vm_usage rows (99,000 fleets
// x 10 data centers) no read-only statement sums them in much under 0.4 s
// on PostgreSQL (every row must be read: a loose index scan over the 99,000
// fleets took 1.15 s, the hash of a sequential scan 0.39 s; docs/dashboard.md),
// and a table of totals kept by triggers would add a write to every VM
// insert, delete and retirement on one row per stack and data center, which
// every writer of the stack would queue behind (and deadlock on, across
// fleets written in separate statements of one transaction). So the totals
// are read at most once per OVERVIEW_CACHE_MS per stack and shared by the
// page loads in between, and by loads that come together (one read in
// flight), while every VM write of this process that may change vm_usage
// (through any record it has open; not a state change, which the authority
// writes many of during an apply: USAGE_UNCHANGED) makes the next load read
// them anew: never stale after this
// process's own writes, at most OVERVIEW_CACHE_MS behind another process's
// (a `fleet apply` on another host, an operator's psql).
import type { Queryable, SqlAdapter } from './sql.ts';

/** How long the overview's totals are reused, unless this process wrote VMs since they were read. */
export const OVERVIEW_CACHE_MS = 5000;

/** The stack-wide part of the overview: fleets with live VMs in code point order, live VMs per data center. */
export interface OverviewTotals {
  fleets: string[];
  totals: { dataCenter: string; vms: number }[];
}

// Every statement this process ran that may have changed vm_usage, counted
// process-wide (a module variable, not the record's): the authority may
// write through one record object and serve the dashboard from another.
let vmWrites = 0;

const READS = /^\s*(SELECT|WITH|SHOW|SET)\b/i;
const WRITES = /\b(INSERT|UPDATE|DELETE|TRUNCATE|MERGE|COPY|CALL|DO|ALTER|DROP|CREATE)\b/i;
const USAGE_TABLES = /\b(vms|vm_usage)\b/i;

/**
 * The start of a statement that names vms and writes but never changes
 * vm_usage, so that the authority's commonest writes leave the totals kept:
 * a state change (no retirement, no size), a history row, a boot approval.
 * Only for a statement that writes no vms column vm_usage sums (stack,
 * fleet, data_center, cpu, memory_gib, retired_at) and inserts or deletes
 * no VM: overview.test's generated writes would show totals kept too long.
 */
export const USAGE_UNCHANGED = '/* vm_usage unchanged */ ';

/** `sql` marked as one that never changes vm_usage (USAGE_UNCHANGED), when `unchanged`. */
export function usageUnchanged(sql: string, unchanged = true): string {
  if (!unchanged) return sql;
  // The same marked text for the same statement (the batch statements' texts are made once): the adapter finds its
  // prepared statement by the text, and a string made anew at every call is copied flat and hashed anew each time.
  let marked = MARKED.get(sql);
  if (marked === undefined) {
    marked = USAGE_UNCHANGED + sql;
    if (MARKED.size < MAX_MARKED) MARKED.set(sql, marked);
  }
  return marked;
}
/** Marked texts kept (the record builds its SQL from a bounded set of shapes; past this, texts are marked afresh). */
const MAX_MARKED = 500;
const MARKED = new Map<string, string>();

/**
 * Whether `text` may change vm_usage: a statement other than a plain read
 * (a SELECT or WITH naming no data-modifying keyword) that names `vms` or
 * `vm_usage` (only triggers on vms write vm_usage), unless it starts with
 * USAGE_UNCHANGED. Errs towards yes: a wrong yes costs one read of the
 * totals, a wrong no stale totals.
 */
export function mayChangeUsage(text: string): boolean {
  if (text.startsWith(USAGE_UNCHANGED)) return false;
  return USAGE_TABLES.test(text) && !(READS.test(text) && !WRITES.test(text));
}

/**
 * `db` counting its statements that may change vm_usage (mayChangeUsage) in
 * the process-wide count, each once it has finished (failed too: its
 * outcome may be unknown); those of a transaction once it has committed or
 * rolled back, so no read that starts before the commit is kept.
 */
export function watchVmWrites(db: SqlAdapter): SqlAdapter {
  return {
    kind: db.kind,
    close: () => db.close(),
    async query(text, params) {
      const writes = mayChangeUsage(text);
      try {
        return await db.query(text, params);
      } finally {
        if (writes) vmWrites++;
      }
    },
    async transaction(fn) {
      let writes = false;
      try {
        return await db.transaction((q) =>
          fn({
            query(text, params) {
              if (mayChangeUsage(text)) writes = true;
              return q.query(text, params);
            },
          } satisfies Queryable),
        );
      } finally {
        if (writes) vmWrites++;
      }
    },
  };
}

interface Entry {
  /** The process's VM write count when the read started: the entry serves only while no write has finished since. */
  writes: number;
  /** When the read started (its snapshot is no older). */
  at: number;
  totals: Promise<OverviewTotals>;
}

/** At most this many stacks' totals are kept (the authority and `fleet ui` serve one). */
const MAX_STACKS = 16;

/** The totals of each stack read lately, by one record. */
export class OverviewCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs = OVERVIEW_CACHE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The stack's totals: kept ones when fresh enough and no VM write of this process finished since they were read, else `read()`'s. */
  get(stack: string, read: () => Promise<OverviewTotals>): Promise<OverviewTotals> {
    const at = this.now();
    const hit = this.entries.get(stack);
    if (hit && hit.writes === vmWrites && at - hit.at < this.ttlMs) return hit.totals;
    const entry: Entry = { writes: vmWrites, at, totals: read() };
    this.entries.delete(stack);
    if (this.entries.size >= MAX_STACKS) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(stack, entry);
    // A failed read is not kept: the next load tries again.
    entry.totals.catch(() => {
      if (this.entries.get(stack) === entry) this.entries.delete(stack);
    });
    return entry.totals;
  }
}
