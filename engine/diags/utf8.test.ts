import { describe, expect, it } from 'vitest';
import { decodeUtf8 } from './utf8.ts';

const latin1 = (s: string) => Buffer.from(s, 'latin1');

describe('decodeUtf8', () => {
  it.each([
    { name: 'UTF-8 text', bytes: Buffer.from('owner: \u00e9quipe\n'), text: 'owner: \u00e9quipe\n' },
    { name: 'a BOM is dropped', bytes: Buffer.from('\ufeffa: 1\n'), text: 'a: 1\n' },
  ])('$name', ({ bytes, text }) => {
    expect(decodeUtf8(bytes, 'f.yaml')).toEqual({ text });
  });

  it.each([
    // \xe9 opens a three-byte sequence that the next letter breaks: the \xe9 is the bad byte, not the letter.
    { name: 'a Latin-1 letter before ASCII', bytes: latin1('a: b\nowner: \xe9quipe\n'), at: [2, 8], byte: 'E9' },
    { name: 'after UTF-8 letters on the line (columns in characters)', bytes: Buffer.concat([Buffer.from('a: \u00e9\u00e9 '), latin1('\xe9')]), at: [1, 7], byte: 'E9' },
    { name: 'a sequence cut by the end of the file', bytes: latin1('ab\xe2\x82'), at: [1, 3], byte: 'E2' },
    { name: 'a stray continuation byte', bytes: latin1('ab\x80c'), at: [1, 3], byte: '80' },
    { name: 'after a BOM', bytes: Buffer.concat([Buffer.from('\ufeffab'), latin1('\xff')]), at: [1, 3], byte: 'FF' },
  ])('$name: located at the bad byte', ({ bytes, at: [line, col], byte }) => {
    const r = decodeUtf8(bytes, 'f.yaml');
    expect(r).toEqual({ problem: expect.stringContaining(`byte 0x${byte} at line ${line}, column ${col} `), where: { file: 'f.yaml', line, col } });
  });
});
