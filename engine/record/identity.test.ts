import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from './open.ts';
import { testBackends, type TestBackend, type TestRecord } from './testing.ts';

describe.each(testBackends())('stack identities on $name', (backend: TestBackend) => {
  let t: TestRecord;
  beforeAll(async () => {
    t = await backend.create();
  });
  afterAll(() => t.cleanup());

  it('has none until asked to create one, then always the same', async () => {
    expect(await t.record.stackIdentity('web')).toBeUndefined();
    const made = await t.record.stackIdentity('web', { create: true });
    expect(made?.stackId).toMatch(/^stk-[0-9a-f-]{36}$/);
    expect(made?.sealKey.secret).toHaveLength(32);
    const again = await t.record.stackIdentity('web');
    expect(again?.stackId).toBe(made?.stackId);
    expect(again?.sealKey.id).toBe(made?.sealKey.id);
    expect(again?.sealKey.secret.equals(made!.sealKey.secret)).toBe(true);
    expect(again?.key(made!.sealKey.id)?.secret.equals(made!.sealKey.secret)).toBe(true);
    expect(again?.key('k-other')).toBeUndefined();
  });

  it('gives two stacks different ids and keys', async () => {
    const a = await t.record.stackIdentity('a', { create: true });
    const b = await t.record.stackIdentity('b', { create: true });
    expect(a?.stackId).not.toBe(b?.stackId);
    expect(a?.sealKey.secret.equals(b!.sealKey.secret)).toBe(false);
  });

  it('gives concurrent first callers one identity', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => t.record.stackIdentity('race', { create: true })));
    expect(new Set(all.map((i) => i?.stackId)).size).toBe(1);
    expect(new Set(all.map((i) => i?.sealKey.secret.toString('hex'))).size).toBe(1);
  });

  it('never shows the key in JSON or util.inspect', async () => {
    const id = (await t.record.stackIdentity('web'))!;
    const secret = id.sealKey.secret;
    for (const text of [JSON.stringify(id), JSON.stringify(id.sealKey), inspect(id, { depth: 5 }), JSON.stringify({ ...id.sealKey })]) {
      expect(text).not.toContain(secret.toString('hex'));
      expect(text).not.toContain(secret.toString('base64'));
      expect(text).not.toContain('secret');
    }
  });
});

describe('a stack identity outlives the process that made it (PGlite)', () => {
  it('is read back after the record is closed and opened again', async () => {
    const backend = testBackends()[0];
    const { url, drop } = await backend.freshUrl();
    try {
      const first = await openRecord(url);
      const made = await first.stackIdentity('local', { create: true });
      await first.close();
      const second = await openRecord(url);
      const read = await second.stackIdentity('local');
      await second.close();
      expect(read?.stackId).toBe(made?.stackId);
      expect(read?.sealKey.secret.equals(made!.sealKey.secret)).toBe(true);
    } finally {
      await drop();
    }
  });
});
