export * from './diagnostic.ts';
export { QUOTE_LIMIT, REASON_LIMIT, clip, clipPath, quote } from './quote.ts';
export { CODES, type Code, type CodeEntry } from './codes/index.ts';
export { damerauDistance, didYouMean, suggest } from './suggest.ts';
export { decodeUtf8, type Decoded } from './utf8.ts';
export { MATCHED_EXACTLY, escapeUnseen, unseenProblem, unseenRefusal, visible } from './unseen.ts';
// Not duplicateKeyDetail (./yaml.ts): it loads the yaml package, which
// `fleet --version` and every command that reads no YAML need not load.
