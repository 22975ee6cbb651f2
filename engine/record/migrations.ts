import { fail } from '../diags/index.ts';
import type { Queryable, SqlAdapter } from './sql.ts';

/**
 * Versioned schema migrations. Append only: never edit a released migration,
 * add the next version instead (and bump nothing else: SCHEMA_VERSION follows
 * the list). Each migration's statements run in the one transaction of
 * migrate(), so a crash leaves the previous version intact.
 */
export interface Migration {
  version: number;
  description: string;
  statements: string[];
  /**
   * It changes only indexes: every query of this dmzfleet runs the same on a
   * record without it, so a command that only reads (state, history) reads
   * a record that lacks only such migrations as it is (migrate's `upgrade: false`).
   */
  indexOnly?: true;
}

// Names (stack, fleet, address) use the "C" collation: the same order on every
// server whatever its locale, and the indexes serve ORDER BY fleet, idx.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'fleets, vms, history, plans, locks, journal, boot attempts and tokens',
    statements: [
      `CREATE TABLE meta (
        id integer PRIMARY KEY CHECK (id = 1),
        app text NOT NULL,
        schema_version integer NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
      `CREATE TABLE fleets (
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        owner text NOT NULL,
        version integer NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (stack, fleet)
      )`,
      `CREATE TABLE vms (
        id text PRIMARY KEY,
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        idx integer NOT NULL CHECK (idx >= 0),
        name text NOT NULL,
        data_center text NOT NULL,
        state text NOT NULL,
        desired_state text NOT NULL,
        spec_hash text NOT NULL,
        image text NOT NULL,
        real_image text,
        cpu double precision NOT NULL,
        memory_gib double precision NOT NULL,
        disk_gib double precision NOT NULL,
        encrypted_disk boolean NOT NULL,
        cloud_id text,
        version integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        retired_at timestamptz
      )`,
      // One live VM per address; retired rows keep their address for history.
      `CREATE UNIQUE INDEX vms_live_address ON vms (stack, fleet, idx) WHERE retired_at IS NULL`,
      `CREATE INDEX vms_scope ON vms (stack, fleet, idx)`,
      `CREATE TABLE history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        vm_id text NOT NULL,
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        address text COLLATE "C" NOT NULL,
        from_state text,
        to_state text NOT NULL,
        actor text NOT NULL,
        plan_id text,
        request_id text,
        outcome text NOT NULL,
        detail text,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`,
      `CREATE INDEX history_address ON history (stack, address, id)`,
      `CREATE INDEX history_vm ON history (vm_id, id)`,
      `CREATE TABLE plans (
        id text PRIMARY KEY,
        stack text COLLATE "C" NOT NULL,
        digest text NOT NULL,
        who text NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        result text NOT NULL
      )`,
      `CREATE INDEX plans_stack ON plans (stack, started_at)`,
      `CREATE TABLE locks (
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        lock_id text NOT NULL,
        who text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        plan_id text,
        since timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (stack, fleet)
      )`,
      `CREATE INDEX locks_lock_id ON locks (lock_id)`,
      `CREATE TABLE journal (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plan_id text NOT NULL,
        address text COLLATE "C" NOT NULL,
        seq integer NOT NULL,
        vm_id text,
        from_state text NOT NULL,
        to_state text NOT NULL,
        idempotency_key text NOT NULL,
        status text NOT NULL,
        detail text,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`,
      `CREATE INDEX journal_step ON journal (plan_id, address, seq, id)`,
      `CREATE TABLE boot_attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        vm_id text,
        data_center text NOT NULL,
        cloud_id text,
        image text,
        approved boolean NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`,
      `CREATE INDEX boot_attempts_vm ON boot_attempts (vm_id, id)`,
      `CREATE TABLE boot_tokens (
        vm_id text PRIMARY KEY,
        token_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        used_at timestamptz
      )`,
    ],
  },
  {
    version: 2,
    description: 'deposed VMs: the old VM of a create-before-delete replace keeps living beside its replacement until deleted',
    statements: [
      `ALTER TABLE vms ADD COLUMN deposed_at timestamptz`,
      `DROP INDEX vms_live_address`,
      // One current VM per address; a deposed one (being replaced) may live beside it.
      `CREATE UNIQUE INDEX vms_live_address ON vms (stack, fleet, idx) WHERE retired_at IS NULL AND deposed_at IS NULL`,
    ],
  },
  {
    version: 3,
    description: 'fencing tokens: every lock acquisition takes a number from a sequence; per fleet the latest stays after release, and the authority refuses work under an older one',
    statements: [
      `CREATE SEQUENCE fencing_tokens`,
      `ALTER TABLE locks ADD COLUMN fencing_token bigint NOT NULL DEFAULT 0`,
      // Outlives the lock row: a released (or broken) lock's runs still in flight meet the newer token here.
      `CREATE TABLE lock_fences (
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        token bigint NOT NULL,
        PRIMARY KEY (stack, fleet)
      )`,
    ],
  },
  {
    version: 4,
    description: 'stack identities: a random id per stack and the key its saved plans are sealed with (engine/record/identity.ts)',
    statements: [
      // One row per stack, made once (by the first `fleet plan --out`). The
      // key is read only by holders of the record (the CLI, the authority);
      // it is never written to a plan, a log or a diagnostic.
      `CREATE TABLE stack_identities (
        stack text COLLATE "C" PRIMARY KEY,
        stack_id text NOT NULL UNIQUE,
        seal_key_id text NOT NULL,
        seal_key bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    version: 5,
    description: 'fleet protection kept in the record: a fleet applied with protect: true stays protected when its spec file is removed',
    statements: [`ALTER TABLE fleets ADD COLUMN protected boolean NOT NULL DEFAULT false`],
  },
  {
    version: 6,
    description: 'grows reserved: a resize that grows, approved and not yet reported, counts for quota and capacity (engine/record/grow.ts)',
    statements: [
      // One row per VM with a grow approved: the size it may reach, until its
      // report (or a failure) clears it, or it expires with the approval's
      // credentials. Budget checks count a VM at the larger of its size and this.
      `CREATE TABLE vm_reservations (
        vm_id text PRIMARY KEY,
        stack text COLLATE "C" NOT NULL,
        request_id text NOT NULL,
        cpu double precision NOT NULL,
        memory_gib double precision NOT NULL,
        expires_at timestamptz NOT NULL
      )`,
      `CREATE INDEX vm_reservations_stack ON vm_reservations (stack)`,
    ],
  },
  {
    version: 7,
    description: 'sealed plans registered with the authority: the scope of each plan whose seal the authority verified, and its MAC under the authority\'s key',
    statements: [
      // Written only by the authority (engine/authority/plan-seals.ts) when a
      // deployed `fleet apply` registers a plan sealed at the authority. Each
      // row carries a MAC under a key derived from the authority's secret, so
      // a row written by anyone else (a holder of the record's credentials)
      // is not believed. The scope is jsonb: { fleets, members }.
      `CREATE TABLE sealed_plans (
        stack text COLLATE "C" NOT NULL,
        plan_id text COLLATE "C" NOT NULL,
        digest text NOT NULL,
        scope jsonb NOT NULL,
        mac text NOT NULL,
        registered_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (stack, plan_id)
      )`,
    ],
  },
  {
    version: 8,
    description: 'usage kept per fleet and data center (vm_usage), in step with vms by statement triggers: what VmReader.usage reads instead of summing every live VM',
    statements: [
      // What the live VMs (retired_at IS NULL; deposed ones count, they run
      // until deleted) of one fleet use in one data center. numeric, not
      // double precision: adding and taking away sizes must come back to
      // exactly zero (floating point would leave crumbs after many resizes).
      // A row that comes down to no VMs stays (readers skip vms = 0): no
      // delete and re-insert of a key under concurrent writers.
      `CREATE TABLE vm_usage (
        stack text COLLATE "C" NOT NULL,
        fleet text COLLATE "C" NOT NULL,
        data_center text COLLATE "C" NOT NULL,
        vms bigint NOT NULL,
        cpu numeric NOT NULL,
        memory_gib numeric NOT NULL,
        PRIMARY KEY (stack, fleet, data_center)
      )`,
      // Kept by triggers rather than by each writer, so no write to vms (a
      // new writer, an operator's psql, a test's raw SQL, an older binary)
      // can leave it behind. Statement-level with transition tables: one
      // upsert of the summed changes per statement, not one per row (a
      // 2,000-row bulk insert batch writes ~20 keys once each); an UPDATE
      // that changes no size, place or retirement (a state change, the
      // commonest write) sums to nothing and writes nothing.
      //
      // Locks: a vm_usage row is only written in a statement that also
      // bumps (so row-locks) its fleet's row in `fleets` (vm-writes.ts), and
      // the trigger runs after the whole statement: whoever holds a fleet's
      // vm_usage rows holds its fleets row already, so these upserts never
      // wait and add no lock order. Writers of different fleets touch
      // different rows.
      `CREATE FUNCTION vm_usage_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          INSERT INTO vm_usage AS u (stack, fleet, data_center, vms, cpu, memory_gib)
          SELECT stack, fleet, data_center, count(*), sum(cpu::numeric), sum(memory_gib::numeric)
          FROM vm_usage_new WHERE retired_at IS NULL
          GROUP BY stack, fleet, data_center ORDER BY stack, fleet, data_center
          ON CONFLICT (stack, fleet, data_center) DO UPDATE
            SET vms = u.vms + EXCLUDED.vms, cpu = u.cpu + EXCLUDED.cpu, memory_gib = u.memory_gib + EXCLUDED.memory_gib;
        ELSIF TG_OP = 'UPDATE' THEN
          INSERT INTO vm_usage AS u (stack, fleet, data_center, vms, cpu, memory_gib)
          SELECT stack, fleet, data_center, sum(n), sum(c), sum(m) FROM (
            SELECT stack, fleet, data_center, 1 AS n, cpu::numeric AS c, memory_gib::numeric AS m FROM vm_usage_new WHERE retired_at IS NULL
            UNION ALL
            SELECT stack, fleet, data_center, -1, -cpu::numeric, -memory_gib::numeric FROM vm_usage_old WHERE retired_at IS NULL
          ) d
          GROUP BY stack, fleet, data_center HAVING sum(n) <> 0 OR sum(c) <> 0 OR sum(m) <> 0 ORDER BY stack, fleet, data_center
          ON CONFLICT (stack, fleet, data_center) DO UPDATE
            SET vms = u.vms + EXCLUDED.vms, cpu = u.cpu + EXCLUDED.cpu, memory_gib = u.memory_gib + EXCLUDED.memory_gib;
        ELSIF TG_OP = 'DELETE' THEN
          INSERT INTO vm_usage AS u (stack, fleet, data_center, vms, cpu, memory_gib)
          SELECT stack, fleet, data_center, -count(*), -sum(cpu::numeric), -sum(memory_gib::numeric)
          FROM vm_usage_old WHERE retired_at IS NULL
          GROUP BY stack, fleet, data_center ORDER BY stack, fleet, data_center
          ON CONFLICT (stack, fleet, data_center) DO UPDATE
            SET vms = u.vms + EXCLUDED.vms, cpu = u.cpu + EXCLUDED.cpu, memory_gib = u.memory_gib + EXCLUDED.memory_gib;
        ELSE
          DELETE FROM vm_usage;
        END IF;
        RETURN NULL;
      END
      $fn$`,
      // One trigger per event: PostgreSQL takes transition tables only on a trigger of one event.
      `CREATE TRIGGER vm_usage_insert AFTER INSERT ON vms REFERENCING NEW TABLE AS vm_usage_new FOR EACH STATEMENT EXECUTE FUNCTION vm_usage_change()`,
      `CREATE TRIGGER vm_usage_update AFTER UPDATE ON vms REFERENCING OLD TABLE AS vm_usage_old NEW TABLE AS vm_usage_new FOR EACH STATEMENT EXECUTE FUNCTION vm_usage_change()`,
      `CREATE TRIGGER vm_usage_delete AFTER DELETE ON vms REFERENCING OLD TABLE AS vm_usage_old FOR EACH STATEMENT EXECUTE FUNCTION vm_usage_change()`,
      `CREATE TRIGGER vm_usage_truncate AFTER TRUNCATE ON vms FOR EACH STATEMENT EXECUTE FUNCTION vm_usage_change()`,
      // The existing rows, after the triggers: CREATE TRIGGER holds off every
      // write to vms until this transaction commits, so none falls between.
      `INSERT INTO vm_usage (stack, fleet, data_center, vms, cpu, memory_gib)
       SELECT stack, fleet, data_center, count(*), sum(cpu::numeric), sum(memory_gib::numeric)
       FROM vms WHERE retired_at IS NULL GROUP BY stack, fleet, data_center`,
    ],
  },
  {
    version: 9,
    description: 'boot_tokens keeps the token a newer boot approval replaced unused (prev_hash, prev_used_at): the boot it may have started in the cloud is still answered, once',
    statements: [
      // A boot edge approved again (the next apply after a crash that lost
      // the first boot's report) replaces the VM's token while the VM may
      // still be booting with the first one (docs/recovery.md, "Resumed
      // boots"). Only the token replaced unused is kept, and only one.
      `ALTER TABLE boot_tokens ADD COLUMN prev_hash text`,
      `ALTER TABLE boot_tokens ADD COLUMN prev_used_at timestamptz`,
    ],
  },
  {
    version: 10,
    indexOnly: true,
    description: 'journal rows unique per plan, step key and status: a journal write retried after its connection died around COMMIT (unknown outcome) never doubles its row',
    statements: [
      // fleet apply retries its record writes on a lost connection
      // (engine/apply/record-retry.ts); the journal's INSERT skips a row
      // already there (ON CONFLICT DO NOTHING, journal.ts). A step writes each
      // status once (started, then done, failed or skipped), so no row of a
      // record written before is a second one of its kind; any such
      // duplicate is dropped first, keeping the oldest, or the index would
      // not build.
      `DELETE FROM journal a USING journal b
       WHERE a.plan_id = b.plan_id AND a.idempotency_key = b.idempotency_key AND a.status = b.status AND a.id > b.id`,
      `CREATE UNIQUE INDEX journal_once ON journal (plan_id, idempotency_key, status)`,
    ],
  },
  {
    version: 11,
    indexOnly: true,
    description: 'journal_once dropped: only a retried journal write looks for its row (journal.ts), so the two rows of every step no longer pay for a unique index',
    statements: [
      // Measured (bench:apply, 4,000 VMs, P=10): the index and its ON
      // CONFLICT cost PostgreSQL about 0.7 s of CPU per apply. A write
      // retried after an unknown outcome skips a row already there with an
      // anti-join on journal_step instead (INSERT_AGAIN, journal.ts).
      `DROP INDEX IF EXISTS journal_once`,
    ],
  },
  {
    version: 12,
    description: 'fleets.managed_by: the program (a Pulumi Fleet or Vm) whose creates made the fleet\'s live VMs; NULL for fleet files (fleet apply)',
    statements: [
      // Written with a fleet's row by every create (vm-writes.ts): the
      // request's managedBy (protocol VmSpec), e.g. "pulumi:<project>/<stack>".
      // It names the fleet's manager while the fleet has live VMs
      // (FleetRow.managedBy): fleet plan leaves such a fleet alone when no
      // fleet file declares it, refuses a fleet file that does, and a create
      // by another manager is refused (record.manager-mismatch).
      `ALTER TABLE fleets ADD COLUMN managed_by text`,
      // Fleets a program made before this version: every live VM was created
      // by the authority outside any apply (its create row has no plan id;
      // fleet apply's always carry the plan's), as a Pulumi Fleet or Vm
      // creates. Marked `pulumi` (LEGACY_PROGRAM, rows.ts), so fleet plan
      // leaves them alone instead of deleting them; the program's next create
      // is let in and writes its full name. Stops at a fleet's first VM made
      // by an apply, an import or a seed.
      `UPDATE fleets f SET managed_by = 'pulumi'
       WHERE f.managed_by IS NULL
         AND EXISTS (SELECT 1 FROM vms v WHERE v.stack = f.stack AND v.fleet = f.fleet AND v.retired_at IS NULL)
         AND NOT EXISTS (
           SELECT 1 FROM vms v WHERE v.stack = f.stack AND v.fleet = f.fleet AND v.retired_at IS NULL
             AND NOT EXISTS (
               SELECT 1 FROM history h
               WHERE h.vm_id = v.id AND h.from_state IS NULL AND h.actor = 'authority' AND h.outcome = 'ok' AND h.plan_id IS NULL))`,
    ],
  },
  {
    version: 13,
    indexOnly: true,
    description: 'vms_cloud_id: the live VMs by cloud id, for an import\'s look for a cloud VM another live VM holds',
    statements: [
      // An adopt (fleet import) refuses a cloud id a live VM of the stack's data center holds (vm-writes.ts): without
      // an index that look scanned every VM (176 ms per imported VM in a 1M-VM record, 0.05 ms with it). Partial: only
      // live VMs with a cloud id, so a create (no cloud id yet) adds no entry; its createVm report adds one.
      `CREATE INDEX vms_cloud_id ON vms (cloud_id) WHERE cloud_id IS NOT NULL AND retired_at IS NULL`,
    ],
  },
  {
    version: 14,
    description: 'boot_tokens remembers the VM row\'s version at each token\'s first use (used_version, prev_used_version): a repeat is answered only while the VM has not left that boot',
    statements: [
      // A used token's approval is answered again within the hour (docs/recovery.md, "Resumed boots") only while the
      // VM's row is at most one write past the version the first use saw (the boot edge's own report, PoweredOn ->
      // Starting): leaving the booting states and coming back takes two writes or more, each bumping the version
      // (boot.ts). A token used before this version has none, and is not answered again: nothing says its VM stayed.
      `ALTER TABLE boot_tokens ADD COLUMN used_version integer`,
      `ALTER TABLE boot_tokens ADD COLUMN prev_used_version integer`,
    ],
  },
  {
    version: 15,
    description: 'boot_tokens remembers the VM\'s last history row at each token\'s issue (issued_history, prev_issued_history): a token boots only the boot it was issued for',
    statements: [
      // A token, used or not, is answered only while the VM has not left the booting states since it was issued
      // (docs/protocol.md, "Boot authorization"): a VM that left its boot (Running, BootFailed, powered off) and came
      // back into a booting state is booted by the next boot edge's token only. Which states boot is the pack's (the
      // check passes them), so the check reads the VM's history rows after the token's issue (history_vm): every
      // state change writes one in its statement. The issuing statement's own rows are before the issue.
      `ALTER TABLE boot_tokens ADD COLUMN issued_history bigint`,
      `ALTER TABLE boot_tokens ADD COLUMN prev_issued_history bigint`,
      // A token issued before this version: the moves from the upgrade on count.
      // (One index probe of history_vm per token; a VM with no history row at all keeps NULL: all its rows count.)
      `UPDATE boot_tokens t SET issued_history = (SELECT max(h.id) FROM history h WHERE h.vm_id = t.vm_id)`,
      `UPDATE boot_tokens SET prev_issued_history = issued_history WHERE prev_hash IS NOT NULL`,
    ],
  },
  {
    version: 16,
    indexOnly: true,
    description: 'journal_failed: the failed journal rows of each plan, in the order written, for the dashboard\'s page of an apply',
    statements: [
      // An apply's page lists its first failures and counts them (planJournalPage): without this, both read every
      // journal row of the plan (a status is no column of journal_step). Partial: a step that did not fail, almost
      // every row an apply writes, adds no entry.
      `CREATE INDEX journal_failed ON journal (plan_id, id) WHERE status = 'failed'`,
    ],
  },
  {
    version: 17,
    // Every query reads the same with or without it: only how writes keep vm_usage changes.
    indexOnly: true,
    description: 'vm_usage kept on UPDATE by a row trigger that fires only when a row\'s usage changes: a state change (most writes) runs no trigger',
    statements: [
      // Version 8's statement trigger ran on every UPDATE of vms: PostgreSQL captured the old and new rows (transition
      // tables) and the function's upsert summed them to nothing for a state change, the commonest write (bench:apply:
      // 12% of PostgreSQL's CPU per 10-item transitionVms). A row trigger's WHEN is checked as each row is written and
      // queues nothing when false: only a retirement (or un-retirement), a resize or a move of a live row (stack, fleet,
      // data center, as raw SQL may do) fires it, once per such row, at the statement's end like the statement trigger
      // (so the lock order is the same: the writer holds the fleet's row already). Each firing takes the row's old
      // values away and adds its new ones, numeric as before: exact. Inserts and deletes keep their statement triggers
      // (one summed upsert per statement for a batch of rows).
      `CREATE FUNCTION vm_usage_row_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF OLD.retired_at IS NULL THEN
          INSERT INTO vm_usage AS u (stack, fleet, data_center, vms, cpu, memory_gib)
          VALUES (OLD.stack, OLD.fleet, OLD.data_center, -1, -OLD.cpu::numeric, -OLD.memory_gib::numeric)
          ON CONFLICT (stack, fleet, data_center) DO UPDATE
            SET vms = u.vms + EXCLUDED.vms, cpu = u.cpu + EXCLUDED.cpu, memory_gib = u.memory_gib + EXCLUDED.memory_gib;
        END IF;
        IF NEW.retired_at IS NULL THEN
          INSERT INTO vm_usage AS u (stack, fleet, data_center, vms, cpu, memory_gib)
          VALUES (NEW.stack, NEW.fleet, NEW.data_center, 1, NEW.cpu::numeric, NEW.memory_gib::numeric)
          ON CONFLICT (stack, fleet, data_center) DO UPDATE
            SET vms = u.vms + EXCLUDED.vms, cpu = u.cpu + EXCLUDED.cpu, memory_gib = u.memory_gib + EXCLUDED.memory_gib;
        END IF;
        RETURN NULL;
      END
      $fn$`,
      `DROP TRIGGER vm_usage_update ON vms`,
      `CREATE TRIGGER vm_usage_update AFTER UPDATE ON vms FOR EACH ROW
       WHEN ((OLD.retired_at IS NULL) <> (NEW.retired_at IS NULL)
         OR (NEW.retired_at IS NULL AND (OLD.stack <> NEW.stack OR OLD.fleet <> NEW.fleet OR OLD.data_center <> NEW.data_center
           OR OLD.cpu <> NEW.cpu OR OLD.memory_gib <> NEW.memory_gib)))
       EXECUTE FUNCTION vm_usage_row_change()`,
    ],
  },
  {
    version: 18,
    description: 'history.code: the error code of a failed step (driver.<kind>) its DMZ client reported, kept with the failure\'s row',
    statements: [
      // Written by the authority from a failure report's code (protocol ReportRequest.code), NULL on every other row. The
      // planner deletes and creates again a VM whose boot failed with driver.boot-denied (its own agent denied) and the
      // authority denied during that boot (deniedBoots); a denial alone may be anyone's boot check (the boot endpoint is
      // open). Nullable, no default, no index: adding it rewrites nothing, and a row written before it (or by a DMZ
      // client older than the field) has NULL: not denied, its VM booted again as before.
      `ALTER TABLE history ADD COLUMN code text`,
    ],
  },
  {
    version: 19,
    description: 'request_claims: a request id of a data center bound to one request across authority replicas (claims.ts)',
    statements: [
      // Written only by authorities run with replicas (AuthorityCoreOptions.replicas > 1), before they decide an edge:
      // the primary key is what makes two replicas given two requests under one id approve at most one. A claim lives
      // as long as the approval's credentials from its last sending (expires_at, the server's clock: the replicas'
      // clocks may differ); expired rows are taken over by a new claim or deleted (pruneRequestClaims).
      `CREATE TABLE request_claims (
        stack text COLLATE "C" NOT NULL,
        data_center text COLLATE "C" NOT NULL,
        request_id text COLLATE "C" NOT NULL,
        vm_id text NOT NULL,
        kind text NOT NULL,
        from_state text,
        to_state text,
        size text,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (stack, data_center, request_id)
      )`,
    ],
  },
];

export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

const APP = 'dmzfleet';
/** Serializes concurrent first opens of one PostgreSQL database (two CI jobs at once). */
const MIGRATE_LOCK_KEY = 4_242_017;

/**
 * Brings the record to SCHEMA_VERSION inside one transaction, idempotently.
 * Refuses (and changes nothing) when the database belongs to someone else or
 * was written by a newer dmzfleet. Returns the version found and the version now.
 */
export async function migrate(
  db: SqlAdapter,
  where: { description: string; file?: string },
  migrations: readonly Migration[] = MIGRATIONS,
  opts: { create?: boolean; upgrade?: boolean; noUpgradeWhy?: string } = {},
): Promise<{ from: number; to: number }> {
  const target = migrations[migrations.length - 1].version;
  // A record at the target version already (every open but the first after
  // an upgrade) needs neither the lock nor the catalog look-ups below: one
  // statement instead of a transaction of five (6-12 ms of every command on
  // PostgreSQL). Anything else (no meta table, another app's, another
  // version) takes the full path, which explains it.
  const at = await db.query<{ app: string; schema_version: number }>('SELECT app, schema_version FROM meta WHERE id = 1').catch(() => []);
  if (at.length === 1 && at[0].app === APP && Number(at[0].schema_version) === target) return { from: target, to: target };
  return db.transaction(async (q) => {
    // Read committed whatever the database's default_transaction_isolation: under repeatable read or serializable the
    // snapshot is taken by the lock's statement, before it waits, so a second upgrader let in after the first one's
    // commit read the old version and ran every migration again ("relation … already exists", a raw error).
    await q.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK_KEY]);
    const from = await currentVersion(q, where);
    // A command that only reads or edits a record (state, history, unlock, refresh) makes none: in an empty
    // database (a mistyped name on a shared server) it would create dmzfleet's tables and answer "0 VMs".
    if (from === 0 && opts.create === false) {
      fail(
        'record.not-found',
        `${where.description} holds no dmzfleet record (the database is empty). Check --record-url (or FLEET_RECORD_URL) and the stack's \`record\`; \`fleet plan\` or \`fleet apply\` creates a record, this command only reads or edits one.`,
        where.file !== undefined ? { file: where.file } : {},
      );
    }
    if (from > target) {
      fail(
        'record.newer-schema',
        `the record ${where.description} has schema version ${from}; this dmzfleet knows versions up to ${target}. Upgrade dmzfleet to use it.`,
        where.file !== undefined ? { file: where.file } : {},
      );
    }
    // A command that only reads (state, history) never upgrades a record: an operator's `fleet state list` with a
    // newer dmzfleet would otherwise move a shared record past the version CI's dmzfleet knows (record.newer-schema there).
    if (from > 0 && from < target && opts.upgrade === false) {
      const missing = migrations.filter((m) => m.version > from);
      if (missing.every((m) => m.indexOnly === true)) return { from, to: from };
      fail(
        'record.older-schema',
        `the record ${where.description} has schema version ${from}; this dmzfleet reads version ${target} (missing: ${missing
          .filter((m) => m.indexOnly !== true)
          .map((m) => m.version)
          .join(', ')}). ${opts.noUpgradeWhy ?? 'This command only reads'}, so it does not upgrade the record. Upgrade it on purpose with \`fleet record upgrade\` (or \`fleet apply\`) with this dmzfleet, once every job that uses the record can move to it (an older dmzfleet refuses an upgraded record), or use the dmzfleet version that wrote it.`,
        where.file !== undefined ? { file: where.file } : {},
      );
    }
    for (const m of migrations) {
      if (m.version <= from) continue;
      for (const s of m.statements) await q.query(s);
    }
    if (from < target) {
      await q.query(
        `INSERT INTO meta (id, app, schema_version) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET schema_version = EXCLUDED.schema_version, updated_at = now()`,
        [APP, target],
      );
    }
    return { from, to: Math.max(from, target) };
  });
}

/** 0 for an empty database; throws record.foreign-database for someone else's. */
async function currentVersion(q: Queryable, where: { description: string; file?: string }): Promise<number> {
  const loc = where.file !== undefined ? { file: where.file } : {};
  const cols = await q.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'meta'`,
  );
  if (cols.length === 0) {
    const tables = await q.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name LIMIT 4`,
    );
    if (tables.length === 0) return 0;
    const shown = tables.slice(0, 3).map((t) => t.table_name).join(', ') + (tables.length > 3 ? ', …' : '');
    fail(
      'record.foreign-database',
      `${where.description} has tables (${shown}) but no dmzfleet record; use an empty database for the record.`,
      loc,
    );
  }
  const names = new Set(cols.map((c) => c.column_name));
  if (!names.has('app') || !names.has('schema_version')) {
    fail('record.foreign-database', `${where.description} has a "meta" table that dmzfleet did not write; use an empty database for the record.`, loc);
  }
  const rows = await q.query<{ app: string; schema_version: number }>('SELECT app, schema_version FROM meta WHERE id = 1');
  // dmzfleet writes its meta row in the transaction that makes the table: a meta table without it is someone else's
  // (migration 1's CREATE TABLE meta stopped on it with a raw "relation "meta" already exists").
  if (rows.length === 0) {
    const others = (await q.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'meta' ORDER BY table_name LIMIT 3`,
    )).map((t) => t.table_name);
    fail(
      'record.foreign-database',
      `${where.description} has a "meta" table but no dmzfleet record in it (no row${others.length > 0 ? `; other tables: ${others.join(', ')}` : ''}); use an empty database for the record.`,
      loc,
    );
  }
  if (rows[0].app !== APP) {
    fail('record.foreign-database', `${where.description} belongs to "${rows[0].app}", not dmzfleet; use an empty database for the record.`, loc);
  }
  return Number(rows[0].schema_version);
}
