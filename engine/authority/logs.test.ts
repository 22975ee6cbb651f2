// The authority's lines at the default level (info): what went otherwise than
// asked (a veto) is logged, an approval is not (it is at debug, with every
// other routine line: docs/operations.md "Logs"), and at debug both are.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { memoryRecord } from '../record/testing.ts';
import type { SqlRecord } from '../record/index.ts';
import type { AuthorizeRequest } from '../../protocol/index.ts';
import { startAuthority } from './server.ts';

const TOKEN = 'tok-miami';
let record: SqlRecord;
beforeAll(async () => {
  record = await memoryRecord();
}, 120_000);
afterAll(() => record.close());

const create = (stack: string, index: number): AuthorizeRequest => ({
  dataCenter: 'miami',
  requestId: randomUUID(),
  planId: 'p',
  kind: 'create',
  vmId: randomUUID(),
  from: null,
  vm: { stack, fleet: 'web', owner: 'team-a', index, name: `${stack}-web-${index}`, dataCenter: 'miami', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, desiredState: 'Running', specHash: 'h' },
});

describe('authority log levels', () => {
  it.each([
    { level: 'info' as const, approvalLogged: false },
    { level: 'debug' as const, approvalLogged: true },
  ])('at $level: the veto is logged; the approval: $approvalLogged', async ({ level, approvalLogged }) => {
    const lines: Record<string, unknown>[] = [];
    const stack = `logs-${level}`;
    const authority = await startAuthority({
      record,
      pack: await defaultPack(),
      stackName: stack,
      dataCenters: [{ name: 'miami', token: TOKEN }],
      secret: 's',
      logger: { level, stream: { write: (text: string) => void lines.push(...text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)) } },
    });
    try {
      const post = async (body: AuthorizeRequest) =>
        (await (await fetch(`${authority.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) })).json()) as { decision: string };
      const ok = create(stack, 0);
      expect((await post(ok)).decision).not.toBe('vetoed');
      // The same address again under another id: vetoed (the address is taken).
      const taken = { ...create(stack, 0), vmId: randomUUID() };
      expect((await post(taken)).decision).toBe('vetoed');
    } finally {
      await authority.close();
    }
    const decisions = lines.filter((l) => l.msg === 'decision');
    expect(decisions.filter((l) => l.decision === 'vetoed')).toEqual([expect.objectContaining({ level: 30, vm: 'web/0' })]);
    expect(decisions.some((l) => l.decision !== 'vetoed')).toBe(approvalLogged);
    expect(lines.filter((l) => l.msg === 'request')).toHaveLength(2);
  });
});
