// What the loader returns: the loaded views (engine/model/loaded.ts, where
// every layer above the model can see them) plus the pack and the diagnostics.
import type { Diagnostic } from '../diags/index.ts';
import type { LoadedFleet, LoadedStack } from '../model/loaded.ts';
import type { LoadedPack } from '../policy/types.ts';

export type { Location, LoadedDataCenter, LoadedStack, LoadedFleet } from '../model/loaded.ts';

/** A file a stack is made from, and what it is to the stack. */
export interface StackInput {
  /** Absolute path. */
  file: string;
  what: 'stack file' | 'fleet spec file' | 'policy pack file' | 'rule module';
}

export interface LoadResult {
  /**
   * Every file the load read or would read: the stack file, each file its
   * `specs` globs match (parsed or not: see LoadOptions.onlyFleets), the
   * pack's policy.yaml and its rule modules. `fleet plan --out` refuses to
   * write over one of them.
   */
  inputs?: readonly StackInput[];
  stack?: LoadedStack;
  pack?: LoadedPack;
  fleets: LoadedFleet[];
  /** Every problem found, errors and warnings; the load is usable only when none is an error. */
  diagnostics: Diagnostic[];
}
