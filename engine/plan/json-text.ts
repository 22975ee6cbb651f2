// The plan document as text, in pieces: the document's JSON (exactly
// JSON.stringify's one-line text) and the seal's canonical JSON (keys sorted),
// each handed to a sink a piece at a time instead of built as one string.
//
// A first import of 100,000 members is a 100 MB document: one string for it,
// its UTF-8 copy for the file and a second 100 MB string for the seal's hash
// were most of `fleet plan`'s time and memory (bench/plan). Here each element
// of the document's top levels (a change) is written as one string, joined
// with the ones before into a piece of about CHUNK characters, and the piece
// handed to the sink (a file, a hash) and let go: nothing keeps the whole.
//
// What the changes of a big plan share is written once:
// - an object or array that is frozen (the planner freezes what it shares:
//   a fleet's path, steps and size, a data center's image, a placement's
//   candidates, a nearest placement; plan-state.ts, creates.ts,
//   placement.ts) is written once per call and its text reused wherever the
//   same object appears again;
// - a member whose value is the one the last object with the same keys held
//   reuses that text, and a run of such members is one reused string (Shape).
// Both are exact as long as nothing changes the objects during the call,
// which holds: a call is synchronous.
//
// A piece always ends between two JSON tokens, so never inside a UTF-16
// surrogate pair (JSON.stringify escapes lone surrogates): encoding the
// pieces to UTF-8 one by one gives the bytes of the whole text.

/**
 * About how many characters a piece handed to a sink holds. 64 Ki rather
 * than the 1 Mi it was: a piece, its UTF-8 and the hash's or the file's
 * work on it then stay in the CPU's caches and the young generation (a 1 Mi
 * string went to the large-object space), and the first import's seal and
 * document took ~5-10% less time (bench/plan, issue 20).
 */
export const CHUNK = 1 << 16;

/** Receives the text a piece at a time, in order. */
export type Sink = (piece: string) => void;

/** No value yet (a slot's `last`). */
const NONE = Symbol('none');

/**
 * The keys of the objects last written with them, in the order they are
 * written (sorted for canonical JSON, Object.keys order for JSON), each as
 * `"key":` and `,"key":`; and per key the value written last and its text.
 * Consecutive objects of a plan mostly have the same keys and many of the
 * same values (every create of a fleet: its fleet, path, steps, size, spec
 * hash), so a value identical to the one before is not written again.
 * A value's text does not depend on the object that holds it, so objects
 * nested in one another with the same keys may share an entry.
 */
interface Shape {
  keys: string[];
  order: string[];
  quoted: string[];
  commaQuoted: string[];
  last: unknown[];
  text: (string | undefined)[];
  /** When each slot's `last` was set (Out.clock). */
  stamp: number[];
  /**
   * Runs of slots whose values were all as in the object before: the run
   * from slot i ends before slot runEnd[i], was written as runText[i] (each
   * member with its leading comma) at runAt[i]. A run is reused while no
   * slot of it has a newer value than its text (stamp < runAt): the
   * members a create shares with the one before are then one string.
   */
  runEnd: number[];
  runAt: number[];
  runText: string[];
}

/**
 * The text being written: its parts since the last piece, and what this call
 * has written already (the text of each frozen object, key lists).
 */
class Out {
  parts: string[];
  length: number;
  readonly sink: Sink;
  readonly texts: Map<object, string>;
  /** The shape of the last object written with each key count, canonical and JSON (see shape()). */
  readonly sortedByCount: Map<number, Shape>;
  readonly keptByCount: Map<number, Shape>;
  /** Counts the slot values and runs written, to tell which came first. */
  clock: number;
  readonly quotedKeys: Map<string, string>;
  readonly commaQuotedKeys: Map<string, string>;

  constructor(sink: Sink) {
    this.parts = [];
    this.length = 0;
    this.sink = sink;
    this.texts = new Map();
    this.sortedByCount = new Map();
    this.keptByCount = new Map();
    this.clock = 0;
    this.quotedKeys = new Map();
    this.commaQuotedKeys = new Map();
  }

  push(s: string): void {
    this.parts.push(s);
    this.length += s.length;
  }

  /** Hands the parts to the sink once they make a piece (or `always`). Only between two whole values. */
  flush(always = false): void {
    if (this.length === 0 || (!always && this.length < CHUNK)) return;
    this.sink(this.parts.join(''));
    this.parts = [];
    this.length = 0;
  }

  /** `,"key":` */
  commaQuote(key: string): string {
    let q = this.commaQuotedKeys.get(key);
    if (q === undefined) this.commaQuotedKeys.set(key, (q = `,${JSON.stringify(key)}:`));
    return q;
  }

  /** `"key":` */
  quote(key: string): string {
    let q = this.quotedKeys.get(key);
    if (q === undefined) this.quotedKeys.set(key, (q = `${JSON.stringify(key)}:`));
    return q;
  }

  /**
   * The object's Shape: the last one with as many keys when it has the same
   * keys (comparing two key lists is cheaper than sorting one), else a new one.
   */
  shape(obj: object, sorted: boolean): Shape {
    const keys = Object.keys(obj);
    const cache = sorted ? this.sortedByCount : this.keptByCount;
    const hit = cache.get(keys.length);
    if (hit) {
      let same = true;
      for (let i = 0; i < keys.length && same; i++) same = keys[i] === hit.keys[i];
      if (same) return hit;
    }
    const order = sorted ? [...keys].sort() : keys;
    const entry: Shape = {
      keys,
      order,
      quoted: order.map((k) => this.quote(k)),
      commaQuoted: order.map((k) => this.commaQuote(k)),
      last: order.map(() => NONE),
      text: order.map(() => undefined),
      stamp: order.map(() => 0),
      runEnd: order.map(() => -1),
      runAt: order.map(() => 0),
      runText: order.map(() => ''),
    };
    cache.set(keys.length, entry);
    return entry;
  }
}

/**
 * `s` as one flat string rather than the rope appending built: the text of
 * a shared object goes into every change that holds it, and a rope would
 * be walked again each time a piece is joined. (Slicing flattens a rope.)
 */
const flat = (s: string): string => ` ${s}`.slice(1);

/** A character JSON.stringify escapes in a string (a surrogate only when lone; any one sends the string there). */
// eslint-disable-next-line no-control-regex -- the control characters are what JSON escapes
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(v) for a primitive, a string without anything to escape quoted directly (the most common value, and twice as fast). */
const primitive = (v: unknown): string | undefined => (typeof v === 'string' && !ESCAPED.test(v) ? `"${v}"` : JSON.stringify(v));

const isPlain = (v: object): boolean => {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
};

/**
 * Canonical JSON (see integrity.ts): object keys sorted by UTF-16 code units
 * at every depth, members whose value is undefined left out, an undefined
 * array element written as null (a hole as nothing, as Array.prototype.map
 * and join did), no whitespace. Every other value is written as
 * JSON.stringify writes it (a function or symbol as null). The first
 * `depth` levels of objects and arrays let the text go to the sink after
 * each of their members.
 */
function canonical(v: unknown, out: Out, depth: number): void {
  if (depth === 0 || v === null || typeof v !== 'object') {
    out.push(canonicalString(v, out));
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      const e: unknown = v[i];
      if (e === undefined) out.push(i in v ? 'null' : '');
      else canonical(e, out, depth - 1);
      out.flush();
    }
    out.push(']');
    return;
  }
  const obj = v as Record<string, unknown>;
  const { order, quoted, commaQuoted } = out.shape(obj, true);
  out.push('{');
  let first = true;
  for (let i = 0; i < order.length; i++) {
    const x = obj[order[i]];
    if (x === undefined) continue;
    out.push(first ? quoted[i] : commaQuoted[i]);
    first = false;
    canonical(x, out, depth - 1);
    out.flush();
  }
  out.push('}');
}

/**
 * The members of slots i..j-1 of an object of shape `sh` whose values are
 * those written last (the caller checked), each with its leading comma: the
 * run written before when it still holds, else a new one, kept flat.
 */
function run(sh: Shape, out: Out, i: number, j: number, newest: number): string {
  if (sh.runEnd[i] === j && sh.runAt[i] > newest) return sh.runText[i];
  let r = '';
  for (let k = i; k < j; k++) r += sh.commaQuoted[k] + sh.text[k]!;
  r = flat(r);
  sh.runEnd[i] = j;
  sh.runAt[i] = ++out.clock;
  sh.runText[i] = r;
  return r;
}

/** canonical() of a value below the streamed levels, as one string (appended: a change's dozens of parts). */
function canonicalString(v: unknown, out: Out): string {
  if (v === null || typeof v !== 'object') return primitive(v) ?? 'null';
  const frozen = Object.isFrozen(v);
  if (frozen) {
    const hit = out.texts.get(v);
    if (hit !== undefined) return hit;
  }
  let s: string;
  if (Array.isArray(v)) {
    s = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) s += ',';
      const e: unknown = v[i];
      if (e === undefined) s += i in v ? 'null' : '';
      else s += canonicalString(e, out);
    }
    s += ']';
  } else {
    const obj = v as Record<string, unknown>;
    const sh = out.shape(obj, true);
    const { order } = sh;
    s = '{';
    let first = true;
    let i = 0;
    while (i < order.length) {
      const x = obj[order[i]];
      if (x === undefined) {
        i++;
        continue;
      }
      if (!first && x === sh.last[i]) {
        // As many of the next members as hold the values written last: one run.
        let j = i + 1;
        let newest = sh.stamp[i];
        for (; j < order.length; j++) {
          const y = obj[order[j]];
          if (y === undefined || y !== sh.last[j]) break;
          if (sh.stamp[j] > newest) newest = sh.stamp[j];
        }
        s += j - i > 1 ? run(sh, out, i, j, newest) : sh.commaQuoted[i] + sh.text[i]!;
        i = j;
        continue;
      }
      let t: string;
      if (x === sh.last[i]) t = sh.text[i]!;
      else {
        t = canonicalString(x, out);
        sh.last[i] = x;
        sh.text[i] = t;
        sh.stamp[i] = ++out.clock;
      }
      s += (first ? sh.quoted[i] : sh.commaQuoted[i]) + t;
      first = false;
      i++;
    }
    s += '}';
  }
  if (frozen) out.texts.set(v, (s = flat(s)));
  return s;
}

/** The canonical JSON of `value` (integrity.ts's canonicalJson) as one string. */
export function canonicalText(value: unknown): string {
  let text = '';
  writeCanonicalJson(value, (piece) => (text += piece));
  return text;
}

/** The canonical JSON of `value` (integrity.ts's canonicalJson), to `sink` in pieces. */
export function writeCanonicalJson(value: unknown, sink: Sink): void {
  const out = new Out(sink);
  // Two levels: the plan's fields, then the elements of each (the changes one by one).
  canonical(value, out, 2);
  out.flush(true);
}

/** What JSON.stringify serialises in place of the member or element `key`: the result of its toJSON, if it has one. */
function toJsonValue(v: unknown, key: string): unknown {
  return v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function' ? (v as { toJSON: (key: string) => unknown }).toJSON(key) : v;
}

/** What JSON.stringify leaves out of an object (and writes as null in an array). */
const omitted = (v: unknown): boolean => v === undefined || typeof v === 'function' || typeof v === 'symbol';

/** json() of a value below the streamed levels, as one string (appended: a change's dozens of parts). */
function jsonString(v: unknown, out: Out): string | undefined {
  if (v === null || typeof v !== 'object') return primitive(v);
  const frozen = Object.isFrozen(v);
  if (frozen) {
    const hit = out.texts.get(v);
    if (hit !== undefined) return hit;
  }
  let s: string;
  if (Array.isArray(v)) {
    s = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) s += ',';
      s += jsonString(toJsonValue(v[i], String(i)), out) ?? 'null';
    }
    s += ']';
  } else if (isPlain(v)) {
    const obj = v as Record<string, unknown>;
    const sh = out.shape(obj, false);
    const { order } = sh;
    s = '{';
    let first = true;
    let i = 0;
    while (i < order.length) {
      const raw = obj[order[i]];
      if (!first && raw === sh.last[i] && sh.text[i] !== undefined) {
        // As many of the next members as hold the values written last (and are written): one run.
        let j = i + 1;
        let newest = sh.stamp[i];
        for (; j < order.length; j++) {
          if (obj[order[j]] !== sh.last[j] || sh.text[j] === undefined) break;
          if (sh.stamp[j] > newest) newest = sh.stamp[j];
        }
        s += j - i > 1 ? run(sh, out, i, j, newest) : sh.commaQuoted[i] + sh.text[i]!;
        i = j;
        continue;
      }
      let t: string | undefined;
      if (raw === sh.last[i]) t = sh.text[i];
      else {
        const x = toJsonValue(raw, order[i]);
        t = jsonString(x, out);
        // Kept only when no toJSON stood in: toJSON may answer differently next time.
        sh.last[i] = x === raw ? raw : NONE;
        sh.text[i] = t;
        sh.stamp[i] = ++out.clock;
      }
      i++;
      if (t === undefined) continue;
      s += (first ? sh.quoted[i - 1] : sh.commaQuoted[i - 1]) + t;
      first = false;
    }
    s += '}';
  } else {
    return JSON.stringify(v);
  }
  if (frozen) out.texts.set(v, (s = flat(s)));
  return s;
}

/**
 * Writes JSON.stringify's text for `v` (toJSON applied already; not a value
 * JSON.stringify omits). Plain objects and arrays are written here (frozen
 * ones once per call); anything else (a Map, a boxed number) by
 * JSON.stringify itself. The first `depth` levels let the text go to the
 * sink after each of their members.
 */
function json(v: unknown, out: Out, depth: number): void {
  if (depth === 0 || v === null || typeof v !== 'object' || !(Array.isArray(v) || isPlain(v))) {
    out.push(jsonString(v, out)!);
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      const e = toJsonValue(v[i], String(i));
      if (omitted(e)) out.push('null');
      else json(e, out, depth - 1);
      out.flush();
    }
    out.push(']');
    return;
  }
  const obj = v as Record<string, unknown>;
  out.push('{');
  let first = true;
  for (const k of Object.keys(obj)) {
    const x = toJsonValue(obj[k], k);
    if (omitted(x)) continue;
    out.push(first ? out.quote(k) : out.commaQuote(k));
    first = false;
    json(x, out, depth - 1);
    out.flush();
  }
  out.push('}');
}

/**
 * JSON.stringify(value) (one line, no indentation), to `sink` in pieces:
 * the same text for plain data (what a plan document is). Nothing is
 * written for a value JSON.stringify turns into undefined (a function,
 * undefined).
 */
export function writeJson(value: unknown, sink: Sink): void {
  const v = toJsonValue(value, '');
  if (omitted(v)) return;
  const out = new Out(sink);
  // Two levels: the plan's fields, then the elements of each (the changes one by one).
  json(v, out, 2);
  out.flush(true);
}
