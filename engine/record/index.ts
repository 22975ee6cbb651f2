export * from './types.ts';
export { openRecord, prepareRecord, describeRecordUrl, isServerRecord, pgliteDir, requireExistingRecord, upgradeRecord, type OpenRecordOptions } from './open.ts';
export type { SqlRecord } from './record.ts';
export { lockHeldDetail } from './locks.ts';
export { BudgetExceededError, CloudIdTakenError, ManagerMismatchError, OwnerMismatchError, RecordUnreachableError, VersionConflictError, isTransientRecordFault } from './errors.ts';
export { MIGRATIONS, SCHEMA_VERSION, migrate, type Migration } from './migrations.ts';
export type { SqlAdapter, Queryable } from './sql.ts';
export { processAlive } from './dirlock.ts';
