import { defineCodes } from './types.ts';

// Diagnostic codes of engine/policy. Each code needs a doc and must be used in the code;
// engine/diags/codes.test.ts and docs/diagnostics.md keep that true.
export const policyCodes = defineCodes({});
