// What the loader returns: the loaded views (engine/model/loaded.ts, where
// every layer above the model can see them) plus the pack and the diagnostics.
import type { Diagnostic } from '../diags/index.ts';
import type { LoadedFleet, LoadedStack } from '../model/loaded.ts';
import type { LoadedPack } from '../policy/types.ts';

export type { Location, LoadedDataCenter, LoadedStack, LoadedFleet } from '../model/loaded.ts';

export interface LoadResult {
  stack?: LoadedStack;
  pack?: LoadedPack;
  fleets: LoadedFleet[];
  /** Every problem found, errors and warnings; the load is usable only when none is an error. */
  diagnostics: Diagnostic[];
}
