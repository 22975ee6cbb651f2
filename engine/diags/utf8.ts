// Strict UTF-8 decoding of the files people write (stack, fleet specs,
// policy packs). Node's 'utf8' decoding turns every byte that is not UTF-8
// into U+FFFD without a word: an owner typed in a Windows-1252 editor
// (`\xe9quipe`) loaded as "\ufffdquipe", matched no quota limit of
// "équipe", and went into the record so.
import { isUtf8 } from 'node:buffer';
import type { Where } from './diagnostic.ts';

/** The text of a file, or where its first byte that is not UTF-8 is. */
export type Decoded = { text: string } | { problem: string; where: Where };

/**
 * Decodes `bytes` as UTF-8 (a leading BOM is dropped), or locates the first
 * invalid byte at its line and column (UTF-16 units, as the YAML parser
 * counts them) with a sentence that says what to do.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): Decoded {
  // The common case checked natively, then decoded by V8's fast path (a
  // fatal TextDecoder per file cost 3x as much over a plan's 500 documents).
  if (isUtf8(bytes)) return { text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8').replace(/^\ufeff/, '') };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    // The longest prefix that decodes (an incomplete sequence at its end is
    // held back by `stream`, not refused); the byte after it is the bad one.
    let lo = 0;
    let hi = bytes.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
        lo = mid;
      } catch {
        hi = mid - 1;
      }
    }
    // When the prefix ends in a sequence the next byte (or the end of the
    // file) breaks, the bad byte is that sequence's first: `\xe9quipe` is a
    // three-byte lead followed by letters.
    let bad = lo;
    if (!decodes(bytes.subarray(0, lo))) {
      bad = lo - 1;
      while (bad > 0 && (bytes[bad] & 0xc0) === 0x80) bad--;
    }
    const lineStart = bytes.lastIndexOf(0x0a, bad - 1) + 1;
    let line = 1;
    for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
    const col = new TextDecoder('utf-8').decode(bytes.subarray(lineStart, bad)).replace(/^\ufeff/, '').length + 1;
    const hex = bytes[bad].toString(16).toUpperCase().padStart(2, '0');
    return {
      problem: `The file is not UTF-8: byte 0x${hex} at line ${line}, column ${col} is not valid UTF-8 (a file saved as Latin-1 or Windows-1252?). Save it as UTF-8.`,
      where: { file, line, col },
    };
  }
}

function decodes(bytes: Uint8Array): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}
