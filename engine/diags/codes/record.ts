import { defineCodes } from './types.ts';

// Diagnostic codes of engine/record. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const recordCodes = defineCodes({
  'record.bad-url': {
    summary: 'Invalid record URL',
    doc: 'The record URL must be pglite:///absolute/dir, postgres://… / postgresql://…, or memory:// (tests). Fix spec.record in stack.yaml or FLEET_RECORD_URL.',
    severity: 'error',
  },
  'record.not-found': {
    summary: 'No record at the URL',
    doc: 'A command that reads or edits a record (`fleet state`, `fleet history`, `fleet unlock`, `fleet refresh`) was pointed at a PGlite folder that does not exist, or at an empty PostgreSQL database. It creates none (no folder, no table): a mistyped --record-url or stack `record` would otherwise answer from a new, empty record ("0 VMs", a drift check that never finds drift). Fix the URL; `fleet plan` and `fleet apply` create a record on their first run.',
    severity: 'error',
  },
  'record.unreachable': {
    summary: 'Record database unreachable',
    doc: 'The PostgreSQL server of the record could not be reached or refused the connection, or the URL\'s parameters ask to connect in a way that cannot work (TLS the server does not offer, a CA file that is not there, an `options` setting the server refuses, a port out of range). Check that it runs, the host and port, credentials and network; the detail names the cause and, for a missing database, refused credentials or an unreachable host, what to do.',
    severity: 'error',
  },
  'record.upgraded': {
    summary: 'Record upgraded',
    doc: 'This command (`fleet apply`, `fleet plan` on a PGlite record, `fleet import`, `fleet refresh`, `fleet serve orchestrator`) found the record at an older schema version and upgraded it, as `fleet record upgrade` does. A warning: the command went on. Every dmzfleet that knows only the older version now refuses the record (record.newer-schema), so move every job that uses it to this dmzfleet.',
    severity: 'warning',
  },
  'record.busy': {
    summary: 'Record in use by another process',
    doc: 'A PGlite record can be open in one process at a time (its <dir>.lock names the holder). Wait for that command to finish (`fleet apply --lock-timeout SECONDS` waits for it); a lock left by a process of this host that is gone (or that had this process\'s pid) is taken over; one of another host, or a pid another program took since, is not: once it is known gone, remove <dir>.lock. Use a PostgreSQL record when several applies run at once.',
    severity: 'error',
  },
  'record.corrupt': {
    summary: 'Record directory unreadable',
    doc: 'The PGlite directory is not a PGlite database (foreign files, another PostgreSQL version) or is damaged. Point the record at an empty or dmzfleet directory, or restore it from a backup. A full disk or a read-only directory is `record.unwritable` instead.',
    severity: 'error',
  },
  'record.unwritable': {
    summary: 'Record storage refuses writes',
    doc: 'The record could not be written: the disk holding a PGlite directory is full, or the directory (a file in it, or the folder of its <dir>.lock) is read-only or not this user\'s; a statement that found the disk full (SQLSTATE 53100, a PGlite or PostgreSQL record) says the same. The detail names the cause. The record is not damaged by it: free space or give this user write access, then run the command again; an apply stopped by it is continued by the next one (docs/recovery.md). PGlite writes its record even to read it, so a read-only copy (a backup on read-only media) is read by copying it to a writable folder first.',
    severity: 'error',
  },
  'record.foreign-database': {
    summary: 'Database is not a dmzfleet record',
    doc: 'The database holds tables but no dmzfleet record. dmzfleet refuses to add its tables to another application\'s database: use an empty database for the record.',
    severity: 'error',
  },
  'record.newer-schema': {
    summary: 'Record written by a newer dmzfleet',
    doc: 'The record\'s schema version is newer than this dmzfleet understands. Upgrade dmzfleet; the record was left untouched.',
    severity: 'error',
  },
  'record.older-schema': {
    summary: 'Record needs an upgrade this command does not make',
    doc: 'The record\'s schema is older than this dmzfleet reads, and the command does not upgrade records: the commands that write nothing (`fleet state`, `fleet history`, `fleet ui`, `fleet refresh --check`, and `fleet plan` on a PostgreSQL record) never do, since after an upgrade an older dmzfleet (a CI job not yet updated, main\'s pipeline while a pull request tries a newer dmzfleet) refuses the record with record.newer-schema. Upgrade it on purpose with `fleet record upgrade` (or `fleet apply`) with this dmzfleet once every job that uses the record can move to it, or use the dmzfleet version that wrote it. A record that lacks only migrations that change indexes is read as it is.',
    severity: 'error',
  },
  'record.over-budget': {
    summary: 'Create over quota or capacity',
    doc: 'The authority asked the record to insert a VM whose owner\'s quota (owner-quota) or data center\'s capacity (datacenter-capacity) the live VMs already use up; the record checks this in the transaction that inserts it, so concurrent applies never exceed a limit. Nothing was inserted; free quota or capacity, or raise the limit.',
    severity: 'error',
  },
  'record.owner-mismatch': {
    summary: 'Create names another owner than the fleet has',
    doc: 'A create names an owner for a fleet the record holds with another owner. A fleet\'s owner is what the record holds: `fleet apply` writes it from the fleet\'s spec before any step, and a create never changes it, so a request cannot move a fleet (and the quota its VMs use) to another owner. Nothing was inserted; apply the fleet\'s spec (which records its owner), or name the recorded owner.',
    severity: 'error',
  },
  'record.manager-mismatch': {
    summary: 'Create by another manager than the fleet has',
    doc: 'A create comes from another manager than the one whose live VMs the fleet has: a Pulumi program (`Fleet` or `Vm` of `providers/pulumi`) creating into a fleet of fleet files (`fleet apply`), fleet apply into a fleet a program manages, or two programs into one fleet. One fleet has one manager (the record\'s `fleets.managed_by`), or the other would plan the first one\'s VMs away. Nothing was inserted; give the program\'s fleet another name, or remove the fleet from its manager first (delete its fleet file and apply, or `pulumi destroy`).',
    severity: 'error',
  },
  'record.version-conflict': {
    summary: 'Record changed concurrently',
    doc: 'A write expected a version of a VM that is no longer current, or an address that is already taken: another process changed the record first. Re-read and retry, or plan again.',
    severity: 'error',
  },
  'record.lock-held': {
    summary: 'Fleet is locked',
    doc: 'Another apply holds the lock of a fleet in scope. Wait for it to finish; if it crashed, its lease expires on its own, or run `fleet unlock LOCKID` once you are sure it is gone (`fleet unlock` refuses a lock whose holder still runs on this host). A holder of this host that no longer runs (a killed apply) is named as gone, with the unlock command.',
    severity: 'error',
  },
  'record.lock-lost': {
    summary: 'Fleet lock lost',
    doc: 'This apply\'s lease on a fleet lock expired and another holder took it, or it was force-unlocked. `fleet apply` then starts no further VM, lets those in flight finish and says so in `apply.stopped` (docs/recovery.md); run it again once the other apply is done. Lost before the apply started (while it planned, or waited at its confirmation prompt: the lock is checked again when the answer comes), nothing was changed, and the detail says so.',
    severity: 'error',
  },
  'record.lock-not-found': {
    summary: 'No such lock',
    doc: 'No lock with that id exists in the record for this stack (a lock of another stack sharing the record is named, and left alone); it may have been released already. `fleet state list` shows the locks held on a stack.',
    severity: 'error',
  },
  'record.fleet-not-found': {
    summary: 'Fleet not in the record',
    doc: '`fleet state list --fleet NAME` names a fleet the record holds nothing of (a typo, or a fleet never applied, or one whose members were all forgotten). The list is empty for it, as for any fleet without live VMs; the warning tells the two apart and suggests a near name.',
    severity: 'warning',
  },
  'record.vm-ambiguous': {
    summary: 'Address has more than one VM',
    doc: '`fleet state rm ADDRESS` names an address with more than one live VM: a create-before-delete replace is in progress, and the old VM it deposed lives beside its replacement until it is deleted. The detail names each (VM id, state, cloud id) with the command that forgets it: `fleet state rm ADDRESS --vm ID`. Nothing was removed.',
    severity: 'error',
  },
  'record.vm-not-found': {
    summary: 'No such VM',
    doc: 'No VM in the record has that id or address (`<fleet>/<index>`). `fleet state list` shows the VMs of the stack.',
    severity: 'error',
  },
});
