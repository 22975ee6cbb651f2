// The tiny SQL surface both backends share. The record class speaks only
// this, so PGlite and PostgreSQL run exactly the same statements.

/** Runs one statement; `$1, $2…` placeholders as in PostgreSQL. */
export interface Queryable {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface SqlAdapter extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; any throw rolls back
   * and is rethrown unchanged. Nested calls are not supported.
   */
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** What every store of the record is built on: the statements, and the record's description for messages. */
export interface RecordSql {
  readonly db: SqlAdapter;
  /** The record URL with any password removed. */
  readonly description: string;
}
