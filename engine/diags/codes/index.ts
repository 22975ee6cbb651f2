import { applyCodes } from './apply.ts';
import { cliCodes } from './cli.ts';
import { planCodes } from './plan.ts';
import { policyCodes } from './policy.ts';
import { recordCodes } from './record.ts';
import { specCodes } from './spec.ts';
import { integrityCodes } from './integrity.ts';
import { simCodes } from './sim.ts';
import { tlsCodes } from './tls.ts';
import type { CodeEntry } from './types.ts';

export type { CodeEntry } from './types.ts';

/**
 * The one registry of diagnostic codes. Each area keeps its own file so work on
 * one area does not touch another's; this object joins them. Codes are
 * `<area>.<kebab-name>` and never reused for another meaning.
 */
export const CODES = {
  ...cliCodes,
  ...specCodes,
  ...recordCodes,
  ...policyCodes,
  ...planCodes,
  ...applyCodes,
  ...tlsCodes,
  ...simCodes,
  ...integrityCodes,
} satisfies Record<string, CodeEntry>;

export type Code = keyof typeof CODES;
