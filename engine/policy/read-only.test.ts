import { describe, expect, it } from 'vitest';
import { inspect } from 'node:util';
import { seededRandom, type SeededRandom } from '../model/seeded-random.ts';
import type { Change, PlanDocument } from '../model/index.ts';
import { deepFreeze as freezeLikeTheLoader, readonlyMap } from '../spec/fleet.ts';
import { evaluateRules, type EvalContext } from './evaluate.ts';
import { deepFreeze, readOnlyViewer } from './read-only.ts';
import { change, ctx, fleet, packWith, plan, stack, vm } from './testdata/fixtures.ts';
import type { Rule, RuleContext } from './types.ts';

/**
 * What a custom rule is handed (the plan and the planner's context) is a
 * read-only view made as it is read (readOnlyViewer), no longer a frozen
 * copy of everything made before the first check: that copy cost ~0.4-1 s
 * of CPU per 100,000 changes (bench/policy). These cases hold the view to
 * the copy's guarantee: every write a check can try, at every object it
 * can reach (the plan, its changes, their steps, sizes and images, the
 * stack, the fleets and their pointers, the record rows and their shared
 * frozen sizes, usage, owners, allowDestroy, protectedFleets), is stopped
 * with a TypeError, and neither the planner's inputs nor what a rule reads
 * change; and a rule reads the same values as the planner holds.
 */

type Path = string;

/** A deep snapshot of plain data, Maps and Sets, read through whatever `v` is (a view or the original). */
function snapshot(v: unknown, seen = new Map<unknown, string>()): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [snapshot(k, seen), snapshot(x, seen)]) };
  if (v instanceof Set) return { set: [...v].map((x) => snapshot(x, seen)) };
  if (Array.isArray(v)) return v.map((x) => snapshot(x, seen));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, snapshot(x, seen)]));
}

/** Every object reachable from `root` (through properties, array elements, Map keys and values, Set values), with a path. */
function reachable(root: unknown, at: Path): [Path, object][] {
  const out: [Path, object][] = [];
  const seen = new Set<object>();
  const walk = (v: unknown, p: Path): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    out.push([p, v]);
    if (v instanceof Map) {
      for (const [k, x] of v) {
        walk(k, `${p}.keys()`);
        walk(x, `${p}.get(${String(k)})`);
      }
    }
    else if (v instanceof Set) for (const x of v) walk(x, `${p}.values()`);
    else for (const k of Reflect.ownKeys(v)) {
      walk((v as Record<PropertyKey, unknown>)[k], `${p}.${String(k)}`);
      // A descriptor's value is what a check gets from Object.getOwnPropertyDescriptor: read-only too.
      walk(Object.getOwnPropertyDescriptor(v, k)?.value, `${p}.descriptor(${String(k)})`);
    }
  };
  walk(root, at);
  return out;
}

/** The writes a check can try on one object, by kind: each must throw. */
function writesTo(o: object): [string, () => unknown][] {
  if (o instanceof Map) {
    const k: unknown = o.keys().next().value;
    return [
      ['Map#set', () => o.set('new', 1)],
      ['Map#set of a key it holds', () => o.set(k, 1)],
      ['Map#delete', () => o.delete(k)],
      ['Map#clear', () => o.clear()],
      ['a property set', () => ((o as unknown as Record<string, unknown>).x = 1)],
    ];
  }
  if (o instanceof Set) {
    const x: unknown = o.values().next().value;
    return [
      ['Set#add', () => o.add('new')],
      ['Set#delete', () => o.delete(x)],
      ['Set#clear', () => o.clear()],
      ['a property set', () => ((o as unknown as Record<string, unknown>).x = 1)],
    ];
  }
  const r = o as Record<PropertyKey, unknown>;
  const writes: [string, () => unknown][] = [
    ['a new property', () => (r.added = 1)],
    ['Object.defineProperty of a new one', () => Object.defineProperty(o, 'defined', { value: 1 })],
    ['Object.setPrototypeOf', () => Object.setPrototypeOf(o, { evil: true })],
    ['Object.assign', () => Object.assign(o, { assigned: 1 })],
  ];
  if (Array.isArray(o)) {
    const a = o as unknown[];
    writes.push(
      ['an element', () => (a[0] = 'x')],
      ['an element past the end', () => (a[a.length] = 'x')],
      ['push', () => a.push('x')],
      ['unshift', () => a.unshift('x')],
      ['length = 0', () => (a.length = 0)],
      ['splice', () => a.splice(0, 1)],
      ['pop', () => a.pop()],
    );
    if (a.length >= 2) writes.push(['sort', () => a.sort(() => -1)], ['reverse', () => a.reverse()], ['fill', () => a.fill('x')], ['shift', () => a.shift()]);
  }
  for (const k of Reflect.ownKeys(o)) {
    if (Array.isArray(o) && k === 'length') continue;
    const key = String(k);
    writes.push(
      [`property ${key}`, () => (r[k] = 'x')],
      [
        `property ${key} to what it holds`,
        () => {
          const held = r[k];
          r[k] = held;
        },
      ],
      [`delete ${key}`, () => delete r[k]],
      [`Object.defineProperty ${key}`, () => Object.defineProperty(o, k, { value: 'x' })],
    );
  }
  return writes;
}

/** A plan and context of every kind of input a rule receives, some frozen as the loaders freeze them, some not. */
function inputs(rnd: SeededRandom): { plan: PlanDocument; ctx: EvalContext } {
  const size = (): Change['size'] => ({ cpu: 1 + rnd.int(8), memoryGiB: 2 + rnd.int(8), diskGiB: 10 + rnd.int(90) });
  const changes = Array.from({ length: 1 + rnd.int(5) }, (_, i) => {
    const action = rnd.pick(['create', 'transition', 'update', 'replace', 'delete', 'noop'] as const);
    const steps = Array.from({ length: rnd.int(3) }, () => ({ member: rnd.pick(['current', 'new'] as const), from: 'PoweredOff', to: 'PoweredOn', operation: 'powerOn' as const }));
    return change(`${rnd.pick(['web', 'db'])}/${i}`, action, { size: size(), steps, ...(action === 'create' ? {} : { vmId: `vm-${i}` }) });
  });
  const p = plan(changes);
  p.unchanged = [{ fleet: 'web', count: 2, states: { Running: 2 }, dataCenters: { miami: 2 } }] as unknown as PlanDocument['unchanged'];
  p.options.allowDestroy.push('web');
  // The loader's fleets are frozen, their pointers a frozen Map whose own set/delete/clear throw (engine/spec/fleet.ts).
  const loaded = freezeLikeTheLoader(fleet('web', { labels: { env: 'dev' }, pointers: readonlyMap(new Map([['spec.count', { line: 7 }]])) }));
  const handMade = fleet('db', { pointers: new Map([['spec.image', { line: 3, col: 2 }]]) });
  // Record rows share a frozen size between rows of one size (engine/record/rows.ts); the rows are not frozen.
  const shared = Object.freeze(size());
  const record = Array.from({ length: 1 + rnd.int(4) }, (_, i) => vm(`web/${i}`, { size: rnd.chance(0.5) ? shared : size() }));
  const c = ctx({
    stack: rnd.chance(0.5) ? freezeLikeTheLoader(stack()) : stack(),
    fleets: [loaded, handMade],
    record,
    usage: [{ fleet: 'gone', owner: 'team-c', dataCenter: 'miami', vms: 2, cpu: 4, memoryGiB: 8 }] as unknown as EvalContext['usage'],
    owners: { web: 'team-a', gone: 'team-c' },
    allowDestroy: new Set(['web']),
    protectedFleets: rnd.chance(0.5) ? new Set(['db']) : deepFreeze(new Set(['db'])),
  });
  return { plan: p, ctx: c };
}

describe('what a custom rule is handed is read-only (readOnlyViewer through evaluateRules)', () => {
  const SEEDS = Array.from({ length: 12 }, (_, i) => i + 1);

  it.each(SEEDS)('seed %i: every write at every object a check reaches throws, and nothing changes', (seed) => {
    const { plan: p, ctx: c } = inputs(seededRandom(seed));
    const before = snapshot({ plan: p, ctx: { ...c, lifecycle: undefined, images: undefined } });
    const tried: { path: string; write: string; threw: unknown }[] = [];
    let read: unknown;
    const attacker: Rule = {
      name: 'attacker',
      description: 'd',
      configSchema: { type: 'object' },
      checkPlan(plan, rctx: RuleContext) {
        read = snapshot({ plan, ctx: { ...rctx, config: undefined, enforcement: undefined, lifecycle: undefined, images: undefined } });
        const { config: _c, enforcement: _e, lifecycle: _l, images: _i, ...handed } = rctx;
        for (const [path, o] of [...reachable(plan, 'plan'), ...reachable(handed, 'ctx').slice(1)]) {
          for (const [write, run] of writesTo(o)) {
            let threw: unknown;
            try {
              run();
            } catch (err) {
              threw = err;
            }
            tried.push({ path, write, threw });
          }
        }
        return [];
      },
    };
    let after: unknown;
    const reader: Rule = {
      name: 'reader',
      description: 'd',
      configSchema: { type: 'object' },
      checkPlan: (plan, rctx) => ((after = snapshot({ plan, ctx: { ...rctx, config: undefined, enforcement: undefined, lifecycle: undefined, images: undefined } })), []),
    };
    expect(evaluateRules(p, c, packWith([[attacker, 'advisory'], [reader, 'advisory']]))).toEqual([]);
    // Every kind of object was reached: the walk is not vacuous.
    const paths = tried.map((t) => t.path);
    for (const at of ['plan.changes', 'plan.changes.0.size', 'plan.changes.0.image', 'plan.changes.0.path', 'plan.options.allowDestroy', 'plan.unchanged.0.states', 'ctx.stack.dataCenters.0.location', 'ctx.fleets.0.pointers', 'ctx.fleets.0.pointers.get(spec.count)', 'ctx.fleets.1.pointers.get(spec.image)', 'ctx.fleets.0.labels', 'ctx.record.0.size', 'ctx.usage.0', 'ctx.owners', 'ctx.allowDestroy', 'ctx.protectedFleets']) {
      expect(paths, at).toContain(at);
    }
    const missed = tried.filter((t) => !(t.threw instanceof TypeError)).map((t) => `${t.path}: ${t.write}`);
    expect(missed).toEqual([]);
    expect(tried.length).toBeGreaterThan(500);
    const now = snapshot({ plan: p, ctx: { ...c, lifecycle: undefined, images: undefined } });
    expect(now).toEqual(before);
    // What each rule read is what the planner holds, before and after the writes.
    const held = { ...(before as { plan: unknown; ctx: Record<string, unknown> }) };
    expect(read).toEqual({ plan: held.plan, ctx: { ...held.ctx, config: undefined, enforcement: undefined } });
    expect(after).toEqual(read);
  });

  it('a check is handed the same change it finds in plan.changes, and may copy what it reads and change its copy', () => {
    const c = change('web/0', 'create', { steps: [{ member: 'current', from: 'PoweredOff', to: 'PoweredOn', operation: 'powerOn' }] });
    const messages: string[] = [];
    const rule: Rule = {
      name: 'copier',
      description: 'd',
      configSchema: { type: 'object' },
      checkChange(ch, rctx) {
        const mine = { ...ch, size: { ...ch.size, cpu: 99 }, steps: [...ch.steps] };
        mine.steps.push(mine.steps[0]);
        const json = JSON.parse(JSON.stringify(ch)) as Change;
        json.size.cpu = 98;
        const rows = rctx.record.filter(() => true);
        rows.length = 0;
        messages.push(`${mine.size.cpu} ${json.size.cpu} ${mine.steps.length} ${ch.steps.length} ${Array.isArray(ch.steps)} ${ch.size.cpu}`);
        return [];
      },
      checkPlan(p) {
        const [first] = p.changes;
        messages.push(`same ${p.changes.includes(first)} ${p.changes.indexOf(first)}`);
        return [];
      },
    };
    const seenChange: unknown[] = [];
    const identity: Rule = { name: 'identity', description: 'd', configSchema: { type: 'object' }, checkChange: (ch) => (seenChange.push(ch), []), checkPlan: (p) => (seenChange.push(p.changes[0]), []) };
    expect(evaluateRules(plan([c]), ctx({ record: [vm('web/1')] }), packWith([[rule, 'advisory'], [identity, 'advisory']]))).toEqual([]);
    expect(messages).toEqual(['99 98 2 1 true 2', 'same true 0']);
    expect(seenChange[0]).toBe(seenChange[1]);
    expect(c.size.cpu).toBe(2);
  });
});

describe('readOnlyViewer', () => {
  it('hands back what is read-only all the way down as it is, and views what is not', () => {
    const view = readOnlyViewer();
    const frozen = freezeLikeTheLoader({ a: { b: [1, 2] } });
    expect(view(frozen)).toBe(frozen);
    const size = Object.freeze({ cpu: 1 });
    const row = { size };
    expect(view(row)).not.toBe(row);
    expect(view(row).size).toBe(size);
    expect(view(view(row))).toBe(view(row));
    // A frozen object holding something writable is a view: its Map is read-only.
    const f = Object.freeze({ m: new Map([['k', { line: 1 }]]) });
    expect(() => (view(f).m as Map<string, unknown>).set('k', 2)).toThrow(TypeError);
    expect(() => (view(f).m.get('k')!.line = 2)).toThrow(/Cannot assign to read only property 'line'/);
    expect(f.m.get('k')).toEqual({ line: 1 });
  });

  it('a Date or class instance read is a frozen clone, as the rules were handed before', () => {
    const view = readOnlyViewer();
    const d = new Date(0);
    const v = view({ d }).d;
    expect(() => ((v as unknown as Record<string, unknown>).x = 1)).toThrow(TypeError);
    expect(d.getTime()).toBe(0);
  });
});

/**
 * A Proxy must report a property its target holds non-configurable and
 * non-writable with the very value held (the Proxy invariant). A view that
 * was a Proxy of the object read threw a TypeError at such a read instead of
 * handing a view (a property of Object.defineProperty's defaults, an array
 * element defined so), handed the writable original through
 * Object.getOwnPropertyDescriptor, and took for read-only all the way down a
 * frozen object whose non-enumerable or symbol-keyed property held a
 * writable object (handed as it was). These cases read every property of
 * each input through a view, then try every write at every object reached.
 */
describe('readOnlyViewer over properties of every attribute', () => {
  const S = Symbol('s');
  const T = Symbol('t');

  /** What a reader sees of `v`: for each own key (symbols too), whether enumerable and the value read; an array's length. Getters are called. */
  function deepRead(v: unknown, depth = 0): unknown {
    if (v === null || typeof v !== 'object') return v;
    if (depth > 10) throw new Error('too deep: a cycle?');
    return {
      array: Array.isArray(v),
      proto: Object.getPrototypeOf(v) === null ? 'null' : Array.isArray(v) ? 'array' : 'object',
      props: Reflect.ownKeys(v).map((k) => {
        const d = Object.getOwnPropertyDescriptor(v, k)!;
        return [String(k), d.enumerable, deepRead((v as Record<PropertyKey, unknown>)[k], depth + 1)];
      }),
    };
  }

  /** Every object reached from a view by reading (properties, descriptor values, getters), each once. */
  function reachedThrough(root: object): object[] {
    const out: object[] = [];
    const walk = (v: unknown): void => {
      if (v === null || typeof v !== 'object' || out.includes(v)) return;
      out.push(v);
      for (const k of Reflect.ownKeys(v)) {
        const d = Object.getOwnPropertyDescriptor(v, k)!;
        const read = (v as Record<PropertyKey, unknown>)[k];
        // What the descriptor holds is what `get` hands: one view.
        if ('value' in d) expect(d.value).toBe(read);
        walk(read);
      }
    };
    walk(root);
    return out;
  }

  const defined = (o: object, k: PropertyKey, d: PropertyDescriptor): object => Object.defineProperty(o, k, d);
  const CASES: [string, () => object][] = [
    ['a frozen object holding an object', () => Object.freeze({ a: { b: 1 } })],
    ['a frozen array of objects', () => Object.freeze([{ b: 1 }, { b: 2 }])],
    ['frozen in frozen in frozen, an object at the bottom', () => Object.freeze({ a: Object.freeze([Object.freeze({ b: { c: 1 } })]) })],
    ['a frozen null-prototype object', () => Object.freeze(Object.assign(Object.create(null) as object, { a: { b: 1 } }))],
    ['Object.defineProperty with its defaults (not configurable, not writable)', () => defined({ a: 1 }, 'k', { value: { x: 1 }, enumerable: true })],
    ['not configurable, writable', () => defined({}, 'k', { value: { x: 1 }, writable: true, enumerable: true })],
    ['an array element not configurable, not writable', () => defined([{ x: 0 }, { x: 1 }], 1, { value: { x: 1 }, enumerable: true, writable: false, configurable: false })],
    ['a sealed object', () => Object.seal({ a: { b: 1 } })],
    ['an array not extensible', () => Object.preventExtensions([{ b: 1 }])],
    ['a frozen array with a named property', () => Object.freeze(Object.assign([{ b: 1 }], { index: 0, groups: { g: { x: 1 } } }))],
    ['a frozen object, a non-enumerable property holding an object', () => Object.freeze(defined({ a: 1 }, 'hidden', { value: { x: 1 } }))],
    ['a frozen object, a symbol-keyed property holding an object', () => Object.freeze({ a: 1, [S]: { x: 1 } })],
    ['a getter not configurable, handing an object', () => defined({}, 'g', { get: () => ({ x: 1 }), enumerable: true })],
    ['a frozen getter handing one object', () => {
      const held = { x: 1 };
      return Object.freeze(defined({}, 'g', { get: () => held, enumerable: true }));
    }],
  ];

  /** A generated tree: objects and arrays, properties of every attribute and key kind, each node frozen, sealed, not extensible or none. */
  function generated(rnd: SeededRandom, depth = 0): object {
    const array = rnd.chance(0.4);
    const o: object = array ? [] : rnd.chance(0.15) ? (Object.create(null) as object) : {};
    const n = rnd.int(4);
    for (let i = 0; i < n; i++) {
      const key: PropertyKey = array && rnd.chance(0.7) ? i : rnd.pick(['a', 'b', 'c', 'length2', S, T]);
      if (Reflect.getOwnPropertyDescriptor(o, key)) continue;
      const value: unknown = depth < 3 && rnd.chance(0.6) ? generated(rnd, depth + 1) : rnd.pick([1, 'x', null, true]);
      if (rnd.chance(0.1)) defined(o, key, { get: () => value, enumerable: rnd.chance(0.5), configurable: rnd.chance(0.5) });
      else defined(o, key, { value, enumerable: rnd.chance(0.7), writable: rnd.chance(0.5), configurable: rnd.chance(0.5) });
    }
    rnd.pick([Object.freeze, Object.seal, Object.preventExtensions, (x: object) => x, (x: object) => x])(o);
    return o;
  }

  const GENERATED: [string, () => object][] = Array.from({ length: 200 }, (_, i) => [`generated, seed ${i + 1}`, () => generated(seededRandom(i + 1))]);

  it.each([...CASES, ...GENERATED])('%s: read as it is, every write refused, nothing changed', (_name, make) => {
    const original = make();
    const before = deepRead(original);
    const view = readOnlyViewer();
    const v = view(original);
    expect(deepRead(v)).toEqual(before);
    expect(Array.isArray(v)).toBe(Array.isArray(original));
    expect(Object.getPrototypeOf(v)).toBe(Object.getPrototypeOf(original));
    expect(Reflect.ownKeys(v)).toEqual(Reflect.ownKeys(original));
    for (const k of Reflect.ownKeys(original)) expect(k in v).toBe(true);
    expect('absent' in v).toBe('absent' in original);
    const reached = reachedThrough(v);
    const missed: string[] = [];
    for (const [i, o] of reached.entries()) {
      // What is read-only all the way down is handed as it is: frozen, its writes refused by JavaScript itself.
      if (Object.isFrozen(o)) continue;
      for (const [write, run] of writesTo(o)) {
        try {
          run();
          missed.push(`object ${i}: ${write}`);
        } catch (err) {
          if (!(err instanceof TypeError)) missed.push(`object ${i}: ${write} threw ${String(err)}`);
          // What a check that wrote is told: the property, and how to change a copy instead.
          else if (!/read-only|read only/.test(err.message)) missed.push(`object ${i}: ${write} threw ${err.message}`);
        }
      }
    }
    expect(missed).toEqual([]);
    expect(deepRead(original)).toEqual(before);
    expect(deepRead(v)).toEqual(before);
  });

  it('console.log of a view shows what it holds', () => {
    const view = readOnlyViewer();
    // Node 20 and 22 print a symbol key in brackets, Node 24 without.
    expect(inspect(view({ a: { b: [1, 2] } }), { depth: 5 }).replace(/\s+/g, ' ').replace('[Symbol(read-only view of)]', 'Symbol(read-only view of)')).toBe(
      '{ Symbol(read-only view of): { a: { b: [ 1, 2 ] } } }',
    );
  });
});
