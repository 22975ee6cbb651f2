// Records as older dmzfleet versions left them, for the upgrade tests: the
// schema is made by the migrations themselves (MIGRATIONS up to a version),
// and filled with generated rows through raw SQL. Each row names every column
// any version has; the columns its version lacks are left out, so one
// generator fills a record of any version (a column added later is dropped
// at the versions before it).
import { seededRandom } from '../../model/seeded-random.ts';
import type { Queryable } from '../sql.ts';

type Row = Record<string, unknown>;

/** The columns of every table of the record's schema, but meta's. */
export async function columnsOf(db: Queryable): Promise<Map<string, string[]>> {
  const rows = await db.query<{ table_name: string; column_name: string }>(
    `SELECT c.table_name, c.column_name FROM information_schema.columns c
     JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
     WHERE c.table_schema = current_schema() AND c.table_name <> 'meta' ORDER BY c.table_name, c.ordinal_position`,
  );
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.table_name, [...(out.get(r.table_name) ?? []), r.column_name]);
  return out;
}

/**
 * Fills a record of any schema version with generated rows of every table it
 * has: fleets, live, retired and deposed VMs (sizes that do not sum exactly in
 * floating point), their history (creates by fleet apply and by a program),
 * plans, locks and fences, journal, boot attempts and tokens, identities,
 * reservations and sealed plans. Returns how many rows it wrote per table.
 */
export async function fillOldRecord(db: Queryable, seed: number): Promise<Record<string, number>> {
  const cols = await columnsOf(db);
  const r = seededRandom(seed);
  const written: Record<string, number> = {};
  const ins = async (table: string, row: Row): Promise<Row | undefined> => {
    const have = cols.get(table);
    if (!have) return undefined;
    const keys = Object.keys(row).filter((k) => have.includes(k));
    const returning = have.includes('id') && !keys.includes('id') ? ' RETURNING id' : '';
    const [back] = await db.query<Row>(
      `INSERT INTO ${table} (${keys.join(', ')}) VALUES (${keys.map((_, i) => `$${i + 1}`).join(', ')})${returning}`,
      keys.map((k) => row[k]),
    );
    written[table] = (written[table] ?? 0) + 1;
    return back ?? row;
  };
  const at = (minutes: number) => new Date(Date.UTC(2026, 0, 1) + minutes * 60_000).toISOString();
  const sizes = [0.1, 0.2, 0.3, 0.5, 1, 2, 3.3, 7.7];
  const states = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running', 'ShuttingDown', 'BootFailed'];
  let vmN = 0;
  for (const stack of ['s1', 's2']) {
    for (const fleet of ['web', 'db', 'batch'].slice(0, r.between(1, 3))) {
      // A fleet made by fleet apply (every create carries a plan id) or by a program (none does).
      const byProgram = r.chance(0.4);
      await ins('fleets', { stack, fleet, owner: `team-${fleet}`, version: r.between(1, 9), protected: r.chance(0.5), managed_by: null });
      const live = r.between(0, 5);
      for (let idx = 0; idx < live + 2; idx++) {
        const id = `vm-${stack}-${fleet}-${vmN++}`;
        const retired = idx >= live; // the last two of each fleet are retired: their addresses stay for history
        const deposed = !retired && r.chance(0.2);
        const state = retired ? 'Deleted' : r.pick(states);
        const address = `${fleet}/${idx}`;
        await ins('vms', {
          id,
          stack,
          fleet,
          idx,
          name: `${stack}-${fleet}-${idx}`,
          data_center: r.pick(['miami', 'richmond']),
          state,
          desired_state: 'Running',
          spec_hash: `h${r.int(1000)}`,
          image: 'ubuntu-22.04',
          real_image: r.chance(0.5) ? 'ami-123' : null,
          cpu: r.pick(sizes),
          memory_gib: r.pick(sizes),
          disk_gib: 10,
          encrypted_disk: r.chance(0.5),
          cloud_id: r.chance(0.7) ? `i-${vmN}` : null,
          version: r.between(1, 12),
          created_at: at(vmN),
          updated_at: at(vmN + 1),
          retired_at: retired ? at(vmN + 2) : null,
        });
        if (deposed) {
          // A deposed twin at the same address (a create-before-delete replace in flight), at versions with deposed_at.
          if (cols.get('vms')!.includes('deposed_at')) {
            await ins('vms', {
              id: `${id}-old`, stack, fleet, idx, name: `${stack}-${fleet}-${idx}-old`, data_center: 'miami', state: 'Running', desired_state: 'Running',
              spec_hash: 'old', image: 'ubuntu-20.04', cpu: r.pick(sizes), memory_gib: r.pick(sizes), disk_gib: 10, encrypted_disk: false,
              cloud_id: `i-old-${vmN}`, version: 3, deposed_at: at(vmN),
            });
          }
        }
        let last: number | undefined;
        const hist = [null, ...states.slice(1, r.between(2, 6))];
        for (let h = 1; h < hist.length; h++) {
          const row = await ins('history', {
            vm_id: id, stack, fleet, address, from_state: h === 1 ? null : hist[h - 1], to_state: hist[h],
            actor: h === 1 && byProgram ? 'authority' : 'fleet apply', plan_id: byProgram ? null : 'plan-1', request_id: `req-${vmN}-${h}`,
            outcome: r.pick(['ok', 'ok', 'failed']), detail: r.chance(0.3) ? 'detail' : null, at: at(vmN * 10 + h), code: r.chance(0.2) ? 'driver.boot-denied' : null,
          });
          last = Number(row!.id);
        }
        if (r.chance(0.5)) {
          await ins('boot_tokens', {
            vm_id: id, token_hash: `th-${vmN}`, created_at: at(vmN), used_at: r.chance(0.5) ? at(vmN + 3) : null,
            prev_hash: r.chance(0.3) ? `ph-${vmN}` : null, prev_used_at: null, used_version: r.chance(0.5) ? 2 : null, prev_used_version: null,
            issued_history: last ?? null, prev_issued_history: null,
          });
        }
        if (r.chance(0.4)) {
          await ins('boot_attempts', { vm_id: id, data_center: 'miami', cloud_id: `i-${vmN}`, image: 'ami-123', approved: r.chance(0.5), reason: 'matched', at: at(vmN) });
        }
        if (!retired && r.chance(0.2)) {
          await ins('vm_reservations', { vm_id: id, stack, request_id: `grow-${vmN}`, cpu: 8, memory_gib: 32, expires_at: at(100_000) });
        }
        await ins('journal', {
          plan_id: 'plan-1', address, seq: 0, vm_id: id, from_state: 'Requested', to_state: 'Running', idempotency_key: `k-${vmN}`,
          status: r.pick(['started', 'done', 'failed']), detail: null, at: at(vmN),
        });
      }
      if (r.chance(0.6)) {
        await ins('locks', {
          stack, fleet, lock_id: `lock-${stack}-${fleet}`, who: 'ci@runner', host: 'runner', pid: r.between(100, 9999), plan_id: 'plan-1',
          since: at(1), expires_at: at(100_000), fencing_token: r.between(1, 50),
        });
      }
      await ins('lock_fences', { stack, fleet, token: r.between(1, 50) });
    }
    await ins('plans', { id: `plan-${stack}`, stack, digest: 'sha256:abc', who: 'ci', started_at: at(0), finished_at: at(5), result: 'succeeded' });
    await ins('stack_identities', { stack, stack_id: `id-${stack}`, seal_key_id: 'k1', seal_key: Buffer.from(`key-${stack}`), created_at: at(0) });
    await ins('sealed_plans', { stack, plan_id: `plan-${stack}`, digest: 'sha256:abc', scope: JSON.stringify({ fleets: ['web'], members: [] }), mac: 'mac', registered_at: at(0) });
  }
  await ins('plans', { id: 'plan-1', stack: 's1', digest: 'sha256:def', who: 'ci', started_at: at(0), finished_at: null, result: 'running' });
  return written;
}

/** Every row of every table (but meta), as JSON text keyed by table, each table's rows sorted: what an upgrade must keep. */
export async function tableRows(db: Queryable, only?: Map<string, string[]>): Promise<Record<string, string[]>> {
  const cols = only ?? (await columnsOf(db));
  const out: Record<string, string[]> = {};
  for (const [table, names] of [...cols].sort(([a], [b]) => a.localeCompare(b))) {
    const rows = await db.query<{ j: string }>(`SELECT jsonb_build_object(${names.map((n) => `'${n}', ${n}`).join(', ')})::text AS j FROM ${table}`);
    out[table] = rows.map((x) => x.j).sort();
  }
  return out;
}
