import { describe, expect, it } from 'vitest';
import { diag, visible } from './index.ts';
import { boundText, clip, clipPath, quote, DETAIL_LIMIT, QUOTE_LIMIT, WHERE_LIMIT } from './quote.ts';

describe('quote', () => {
  it.each([
    ['a short value, as JSON writes it', 'team-a', '"team-a"'],
    ['a line break and a quote', 'a\n"b"', '"a\\n\\"b\\""'],
    ['an escape sequence', '\u001b[2J', '"\\u001b[2J"'],
    ['a right-to-left override JSON leaves as it is', 'a\u202eb', '"a\\u202Eb"'],
    ['exactly the limit', 'x'.repeat(QUOTE_LIMIT), `"${'x'.repeat(QUOTE_LIMIT)}"`],
    ['one past the limit', 'x'.repeat(QUOTE_LIMIT + 1), `"${'x'.repeat(QUOTE_LIMIT)}"… (1 more character)`],
    ['2,000,000 characters', 'x'.repeat(2_000_000), `"${'x'.repeat(QUOTE_LIMIT)}"… (1999900 more characters)`],
    ['astral characters are not split', '💥'.repeat(QUOTE_LIMIT + 2), `"${'💥'.repeat(QUOTE_LIMIT)}"… (2 more characters)`],
  ])('%s', (_name, value, want) => {
    expect(quote(value)).toBe(want);
  });

  it('clip and visible cut the same way, unquoted and quoted', () => {
    expect(clip('y'.repeat(150))).toBe(`${'y'.repeat(QUOTE_LIMIT)}… (50 more characters)`);
    expect(clip('a\u200bb')).toBe('a\\u200Bb');
    expect(visible('z'.repeat(QUOTE_LIMIT + 5))).toBe(`"${'z'.repeat(QUOTE_LIMIT)}"… (5 more characters)`);
  });
});

describe('boundText and diag: the backstop for a message that quoted a value whole', () => {
  it('keeps short text as it is and cuts the middle of long text, keeping its end', () => {
    expect(boundText('short', 10)).toBe('short');
    const s = boundText(`Image "${'x'.repeat(10_000)}" is unknown; fix it.`, 200);
    expect(s.length).toBeLessThan(260);
    expect(s).toMatch(/^Image "x+… \(\d+ more characters\) …x+" is unknown; fix it\.$/);
  });

  it('bounds every detail, file and address diag() makes', () => {
    const d = diag('spec.unknown-image', `Image ${'x'.repeat(100_000)} is unknown.`, { file: `${'d/'.repeat(10_000)}web.yaml`, line: 1, col: 2, address: 'a'.repeat(10_000) });
    expect(d.detail.length).toBeLessThan(DETAIL_LIMIT + 40);
    expect(d.detail.endsWith(' is unknown.')).toBe(true);
    expect(d.file!.length).toBeLessThan(WHERE_LIMIT + 40);
    expect(d.file!.endsWith('web.yaml')).toBe(true);
    expect(d.address!.length).toBeLessThan(WHERE_LIMIT + 40);
    expect(clipPath(`/a/${'\u200b'.repeat(1000)}/b`).length).toBeLessThan(WHERE_LIMIT + 40);
  });
});
