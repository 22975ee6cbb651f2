// Whole-program plan fixtures: test/fixtures/plan/NN-name/ holds a stack, its
// specs, a starting record and the expected plan (JSON, text, markdown).
// UPDATE_GOLDEN=1 rewrites the expected files; review the diff by eye.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planStack, renderJson, renderMarkdown, renderText } from '../engine/plan/index.ts';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { loadStack } from '../engine/spec/index.ts';
import { fixtureOptions, fixtureVms, seedFixture } from './fixtures/plan/harness.ts';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(import.meta.dirname, 'fixtures', 'plan');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const cases = readdirSync(FIXTURES).filter((d) => /^\d\d-/.test(d)).sort();
const env = { ...process.env, FLEET_RECORD_URL: undefined };

function golden(file: string, actual: string): void {
  if (UPDATE || !existsSync(file)) writeFileSync(file, actual);
  expect(actual).toBe(readFileSync(file, 'utf8'));
}

describe('plan fixtures', () => {
  // One in-memory record for every case: each fixture is its own stack.
  let record: FleetRecord;
  beforeAll(async () => {
    record = await openRecord('memory://');
  });
  afterAll(async () => {
    await record?.close();
  });

  it.each(cases)('%s', async (name) => {
    const dir = join(FIXTURES, name);
    const loaded = await loadStack(dir, { cwd: ROOT, env });
    expect(loaded.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    await seedFixture(record, fixtureVms(join(dir, 'record.yaml'), loaded.stack!.name, loaded.fleets, loaded.pack!.images));
    const { plan } = await planStack(dir, {
      cwd: ROOT,
      env,
      record,
      ...fixtureOptions(join(dir, 'options.yaml')),
      now: new Date('2026-01-01T00:00:00.000Z'),
      id: '00000000-0000-4000-8000-000000000000',
    });
    golden(join(dir, 'expected.json'), renderJson(plan));
    golden(join(dir, 'expected.txt'), renderText(plan));
    golden(join(dir, 'expected.md'), renderMarkdown(plan));
  });
});
