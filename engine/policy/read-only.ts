// Read-only copies of what a custom rule is handed. Object.freeze stops a
// write to a property, but not Map#set, Map#delete, Map#clear or their Set
// counterparts: the entries of a Map or Set live in its internal slots, not
// in properties. A frozen rule input that held a Map (a fleet's `pointers`)
// or a Set (`allowDestroy`, `protectedFleets`) could still be changed by a
// check, without failing, under the rules after it.
//
// A Map or Set here is made read-only in place, without a copy: its
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
