// What bench:apply reads of the processes it measures: CPU from /proc (a
// process, or a local PostgreSQL server's every backend) and the journal's
// rows and INSERTs (group commit) from the record.
import { readFileSync, readdirSync } from 'node:fs';

/** CPU seconds (user + sys) of a process from /proc; with `children`, also its reaped children's. */
export function procCpu(pid: number, children = false): number {
  return statCpu(`/proc/${pid}/stat`, children);
}

/** CPU seconds of a process's main thread, the one its JavaScript runs on; the rest of procCpu is its other threads' (V8's compiler and GC threads, libuv's pool). */
export function mainThreadCpu(pid: number): number {
  return statCpu(`/proc/${pid}/task/${pid}/stat`, false);
}

function statCpu(path: string, children: boolean): number {
  try {
    const stat = readFileSync(path, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 of stat (utime stime cutime cstime) are 11-14 after the comm field.
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return ticks / 100; // CLK_TCK is 100 on Linux
  } catch {
    return 0;
  }
}

/** Journal rows and the INSERTs that wrote them: each INSERT is its own transaction, so one xmin per INSERT. */
export async function journalStats(url: string): Promise<{ rows: number; inserts: number }> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ rows: string; inserts: string }>('SELECT count(*) AS rows, count(DISTINCT xmin::text) AS inserts FROM journal');
    return { rows: Number(r.rows[0].rows), inserts: Number(r.rows[0].inserts) };
  } finally {
    await c.end();
  }
}

/** CPU seconds of every PostgreSQL process visible here (a local server), exited backends included via the postmaster. */
export function postgresCpu(): number | undefined {
  let total = 0;
  let seen = false;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let comm: string;
    let ppid: number;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      continue;
    }
    if (comm !== 'postgres') continue;
    seen = true;
    // The postmaster (its parent is not postgres) also carries the CPU of backends that exited.
    let parentIsPg = false;
    try {
      const ps = readFileSync(`/proc/${ppid}/stat`, 'utf8');
      parentIsPg = ps.slice(ps.indexOf('(') + 1, ps.lastIndexOf(')')) === 'postgres';
    } catch {
      /* parent gone */
    }
    total += procCpu(Number(e), !parentIsPg);
  }
  return seen ? total : undefined;
}
