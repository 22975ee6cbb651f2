// What a whole-program test checks an apply against: the stack's record and
// its data centers, read through one session of the stack (as fleet does).
import { openSession } from '../../engine/apply/index.ts';
import type { VmRow } from '../../engine/record/types.ts';
import type { ActualVm } from '../../protocol/index.ts';
import { REPO } from './stack.ts';

/** The record's live VMs of the stack in `dir`, and every VM its data centers list (present or terminated). */
export async function readWorld(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<{ vms: VmRow[]; cloud: ActualVm[] }> {
  const s = await openSession(dir, { cwd: REPO, env });
  try {
    const vms = await s.record.listVms(s.stack.name);
    const cloud: ActualVm[] = [];
    for (const [, p] of s.providers) cloud.push(...(await p.listVms()));
    return { vms, cloud };
  } finally {
    await s.close();
  }
}
