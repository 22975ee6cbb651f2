// What a custom rule is handed, made read-only: a view of the plan and
// context made as it is read (readOnlyViewer, below), its Maps and Sets
// read-only copies. Object.freeze stops a
// write to a property, but not Map#set, Map#delete, Map#clear or their Set
// counterparts: the entries of a Map or Set live in its internal slots, not
// in properties. A frozen rule input that held a Map (a fleet's `pointers`)
// or a Set (`allowDestroy`, `protectedFleets`) could still be changed by a
// check, without failing, under the rules after it.
//
// A Map or Set here (deepFreeze; readOnlyViewer's copy) is made read-only in place: its
// prototype becomes one whose mutators throw (it is still a Map or Set:
// `instanceof`, iteration, `new Map(m)` and every read work as before, at
// the same cost), and it is frozen, so the prototype cannot be changed back
// nor a mutator be put on it as its own property. What this guards against
// is a check that writes by mistake; a rule module is code running in the
// process, and one that calls `Map.prototype.set.call(m, …)` on purpose is
// not stopped.

function refuse(kind: 'Map' | 'Set', method: string): () => never {
  return function readOnly(): never {
    throw new TypeError(`Cannot call ${method}() on a read-only ${kind}: what a rule is handed is read-only; copy it (new ${kind}(…)) to change a copy`);
  };
}

/** The prototype of a read-only Map: Map.prototype's, but set, delete and clear throw. */
const READ_ONLY_MAP: object = Object.freeze(
  Object.create(Map.prototype, {
    set: { value: refuse('Map', 'set') },
    delete: { value: refuse('Map', 'delete') },
    clear: { value: refuse('Map', 'clear') },
  }),
);

/** The prototype of a read-only Set: Set.prototype's, but add, delete and clear throw. */
const READ_ONLY_SET: object = Object.freeze(
  Object.create(Set.prototype, {
    add: { value: refuse('Set', 'add') },
    delete: { value: refuse('Set', 'delete') },
    clear: { value: refuse('Set', 'clear') },
  }),
);

/**
 * `v` and everything in it frozen, in place: plain objects and arrays, and
 * Maps and Sets (made read-only, with their keys and values). For values a
 * rule is handed that belong to no one else (a structured clone, or a copy
 * made for the rules): a Map's prototype is changed.
 */
export function deepFreeze<T>(v: T): T {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return v;
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Map.prototype) {
    Object.setPrototypeOf(v, READ_ONLY_MAP);
    Object.freeze(v);
    Map.prototype.forEach.call(v, (x: unknown, k: unknown) => {
      deepFreeze(k);
      deepFreeze(x);
    });
    return v;
  }
  if (proto === Set.prototype) {
    Object.setPrototypeOf(v, READ_ONLY_SET);
    Object.freeze(v);
    Set.prototype.forEach.call(v, (x: unknown) => deepFreeze(x));
    return v;
  }
  Object.freeze(v);
  for (const x of Object.values(v)) deepFreeze(x);
  return v;
}

/**
 * Objects known to be read-only all the way down (frozen plain objects and
 * arrays, read-only Maps and Sets, holding only such things). Frozen is
 * forever, so once true it stays true: the stack a loader froze, or a
 * record row's shared frozen size, is walked once per process, not once
 * per plan.
 */
const DEEP_READ_ONLY = new WeakSet<object>();

function deeplyReadOnly(v: object, visiting: Set<object>): boolean {
  if (DEEP_READ_ONLY.has(v) || visiting.has(v)) return true;
  if (!Object.isFrozen(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  const inner = (x: unknown): boolean => x === null || (typeof x !== 'object' && typeof x !== 'function') || (typeof x === 'object' && deeplyReadOnly(x, visiting));
  visiting.add(v);
  let ok = true;
  if (proto === READ_ONLY_MAP) Map.prototype.forEach.call(v, (x: unknown, k: unknown) => (ok &&= inner(k) && inner(x)));
  else if (proto === READ_ONLY_SET) Set.prototype.forEach.call(v, (x: unknown) => (ok &&= inner(x)));
  // A Date, a class instance, a Map frozen but not read-only: state Object.freeze does not reach.
  else if (!(Array.isArray(v) ? proto === Array.prototype : proto === Object.prototype || proto === null)) ok = false;
  else {
    // Every own property, not Object.values' enumerable string keys: a non-enumerable or symbol-keyed
    // property holding something writable is read as well. A getter proves nothing (it may hand out anything).
    for (const k of Reflect.ownKeys(v)) {
      const d = Reflect.getOwnPropertyDescriptor(v, k);
      if (!(ok &&= d !== undefined && 'value' in d && inner(d.value))) break;
    }
  }
  visiting.delete(v);
  // Only what was proven outright is remembered: below a cycle, `true` assumed the object being walked.
  if (ok && visiting.size === 0) DEEP_READ_ONLY.add(v);
  return ok;
}

function refused(what: string, key?: PropertyKey): never {
  const at = key === undefined ? '' : ` '${String(key)}'`;
  throw new TypeError(`${what}${at}: what a rule is handed is read-only; copy it ({ ...o }, [...a], new Map(m)) to change a copy`);
}

/**
 * A read-only view of `v` and everything reached through it, made as it is
 * read rather than by copying it first. Call it once per evaluation and use
 * the function it returns on every input of the rules: each object read
 * through it gets one view (`view(x) === view(x)`, so a change a check is
 * handed is the same object as the one in `plan.changes`), and nothing is
 * copied or frozen that no check reads. The originals are not touched: the
 * planner goes on to change the plan it made.
 *
 * | what is read                          | what the rule is handed                                      |
 * | ------------------------------------- | ------------------------------------------------------------ |
 * | a primitive, a function               | itself                                                       |
 * | anything read-only all the way down   | itself (a loader's frozen stack, a record row's shared size) |
 * | a plain object or array               | a Proxy (of a stand-in holding it) whose writes throw and    |
 * |                                       | whose reads are views                                        |
 * | a Map or Set                          | a read-only copy (./deepFreeze's prototype) of views         |
 * | anything else (a Date, a class)       | a frozen structured clone, as the rules were handed before   |
 *
 * A Proxy refuses every write: a property set, deleted or defined, the
 * prototype set, Object.freeze, seal or preventExtensions (it is read-only
 * already, but not frozen: Object.isFrozen says false), array methods that
 * write (push, sort, `length = 0`). Its property descriptors say
 * `writable: false, configurable: true` and hold views (`get` and the
 * descriptor's `value` are the same view), but an array's `length`, which
 * says `writable: true, configurable: false` (a Proxy of an array may not
 * report it otherwise), and is refused all the same.
 *
 * The Proxy's target is not the object read but an empty stand-in of its
 * kind (a `[]` for an array, so Array.isArray and JSON.stringify see an
 * array; an object of its prototype otherwise) holding it under a symbol
 * no trap reports; every trap reads the object itself. A Proxy must report
 * a property that its target holds non-configurable and non-writable with
 * the very value held, and no other descriptor: a Proxy of the object read
 * could not hand a view of an object held so (a frozen object or array, an
 * `Object.defineProperty` with its defaults) and threw a TypeError at the
 * read (the Proxy invariant), or handed the writable original through
 * Object.getOwnPropertyDescriptor. The stand-in holds nothing of the sort,
 * so every property of every object, frozen or not, reads as a view, and
 * nothing is copied.
 *
 * What a view cannot give: `structuredClone` of it throws (DataCloneError;
 * copy with `{ ...o }` or JSON). A check that calls
 * `Map.prototype.set.call(m, …)` on purpose writes to the copy, which the
 * rules after it in the same evaluation share, never to the original.
 */
export function readOnlyViewer(): <T>(v: T) => T {
  // A Map, not a WeakMap: it lives as long as one evaluation, and a WeakMap's set costs several times a Map's.
  const views = new Map<object, unknown>();
  const handler: ProxyHandler<Stand> = {
    get: (t, k) => view(Reflect.get(t[HELD], k)),
    has: (t, k) => Reflect.has(t[HELD], k),
    ownKeys: (t) => Reflect.ownKeys(t[HELD]),
    getOwnPropertyDescriptor(t, k) {
      const held = t[HELD];
      const d = Reflect.getOwnPropertyDescriptor(held, k);
      if (d === undefined) return undefined;
      // An array's length: the stand-in's own is not configurable, and writable (see above). A number.
      if (k === 'length' && Array.isArray(held)) return { value: d.value as unknown, writable: true, enumerable: false, configurable: false };
      if ('value' in d) return { value: view(d.value), writable: false, enumerable: d.enumerable, configurable: true };
      return { get: () => view(Reflect.get(held, k)), set: undefined, enumerable: d.enumerable, configurable: true };
    },
    set: (_t, k) => refused('Cannot assign to read only property', k),
    deleteProperty: (_t, k) => refused('Cannot delete property', k),
    defineProperty: (_t, k) => refused('Cannot define property', k),
    setPrototypeOf: () => refused('Cannot set the prototype'),
    preventExtensions: () => refused('Cannot freeze, seal or prevent extensions of it (it is read-only already)'),
  };
  const make = (v: object): unknown => {
    if (Object.isFrozen(v) && deeplyReadOnly(v, new Set())) return v;
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === Map.prototype || proto === READ_ONLY_MAP) {
      const m = new Map<unknown, unknown>();
      Map.prototype.forEach.call(v, (x: unknown, k: unknown) => m.set(view(k), view(x)));
      // Its keys and values are views already (read-only, and not to be frozen: a view refuses that).
      return Object.freeze(Object.setPrototypeOf(m, READ_ONLY_MAP) as object);
    }
    if (proto === Set.prototype || proto === READ_ONLY_SET) {
      const s = new Set<unknown>();
      Set.prototype.forEach.call(v, (x: unknown) => s.add(view(x)));
      return Object.freeze(Object.setPrototypeOf(s, READ_ONLY_SET) as object);
    }
    if (Array.isArray(v) ? proto === Array.prototype : proto === Object.prototype || proto === null) {
      return new Proxy(standIn(v, proto as object | null), handler);
    }
    return deepFreeze(structuredClone(v));
  };
  function view<T>(v: T): T {
    if (v === null || typeof v !== 'object') return v;
    let w = views.get(v);
    if (w === undefined) {
      w = make(v);
      views.set(v, w);
      if (w !== v) views.set(w as object, w);
    }
    return w as T;
  }
  return view;
}

/**
 * Where a stand-in holds the object it stands for: a symbol of this module, which no trap reports. console.log and
 * util.inspect show a Proxy's target, not what its traps report: a view shows as
 * `{ [Symbol(read-only view of)]: { …what it holds… } }` (Node 24 prints the key without brackets). (A custom inspect on each stand-in cost ~10% more per view.)
 */
const HELD: unique symbol = Symbol('read-only view of');

/** The target of a view's Proxy: an empty object or array holding the object viewed (readOnlyViewer). */
interface Stand {
  [HELD]: object;
}

function standIn(v: object, proto: object | null): Stand {
  if (Array.isArray(v)) {
    const a = [] as unknown as Stand;
    a[HELD] = v;
    return a;
  }
  if (proto === Object.prototype) return { [HELD]: v };
  const o = Object.create(proto) as Stand;
  o[HELD] = v;
  return o;
}
