export { GroupCommit } from './group-commit.ts';
export { Batched, KeyLocks } from './batched.ts';
export { lockFolder, processAlive, type FolderLockOptions, type LockInfo } from './lockfile.ts';
export { openOwnFile, writeOwnFile, writeAll, ownFileFlags, linkRefused } from './own-file.ts';
export { makePrivate } from './private.ts';
