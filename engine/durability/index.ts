export { GroupCommit } from './group-commit.ts';
export { Batched, KeyLocks } from './batched.ts';
