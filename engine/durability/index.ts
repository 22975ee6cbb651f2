export { GroupCommit } from './group-commit.ts';
export { Batched } from './batched.ts';
