// The identity store: who a stack is in this record. A random stack id (two
// stacks may share a name; a plan made against one must never apply to the
// other) and the key saved plans are sealed with (engine/plan/integrity.ts).
//
// What must stay true:
// - The key is made here, kept here, and handed only to the process that
//   holds the record (it seals and verifies in memory). It never goes into
//   a plan, a log, a diagnostic or a JSON rendering: the returned key's
//   `secret` is not enumerable, so JSON.stringify and util.inspect leave it out.
// - Two first callers at once get the same identity (one INSERT wins; the
//   other reads the winner's row).
import { randomBytes, randomUUID } from 'node:crypto';
import type { RecordSql } from './sql.ts';
import type { IdentityStore, RecordSealKey, StackIdentity } from './types.ts';

interface IdentityRow {
  stack: string;
  stack_id: string;
  seal_key_id: string;
  seal_key: Uint8Array;
}

/** A key whose secret JSON.stringify, spreading and util.inspect never show. */
function sealKey(id: string, secret: Uint8Array): RecordSealKey {
  const key = { id } as RecordSealKey;
  Object.defineProperty(key, 'secret', { value: Buffer.from(secret), enumerable: false });
  return key;
}

function identityOf(row: IdentityRow): StackIdentity {
  const current = sealKey(row.seal_key_id, row.seal_key);
  return { stack: row.stack, stackId: row.stack_id, sealKey: current, key: (id) => (id === current.id ? current : undefined) };
}

export function identityStore({ db }: RecordSql): IdentityStore {
  const read = async (stack: string) => {
    const rows = await db.query<IdentityRow>('SELECT stack, stack_id, seal_key_id, seal_key FROM stack_identities WHERE stack = $1', [stack]);
    return rows.length ? identityOf(rows[0]) : undefined;
  };
  return {
    async stackIdentity(stack, opts = {}) {
      const found = await read(stack);
      if (found || !opts.create) return found;
      await db.query(
        `INSERT INTO stack_identities (stack, stack_id, seal_key_id, seal_key) VALUES ($1, $2, $3, $4) ON CONFLICT (stack) DO NOTHING`,
        [stack, `stk-${randomUUID()}`, `k-${randomBytes(4).toString('hex')}`, randomBytes(32)],
      );
      return read(stack);
    },
  };
}
