export { GroupCommit } from './group-commit.ts';
export { Batched, KeyLocks } from './batched.ts';
export { lockFolder, processAlive, type FolderLockOptions, type LockInfo } from './lockfile.ts';
export { makePrivate } from './private.ts';
