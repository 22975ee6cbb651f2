import type { RegisterCommand } from './types.ts';
import { registerPlan } from './plan.ts';
import { registerPolicy } from './policy.ts';
import { registerServe } from './serve.ts';
import { registerValidate } from './validate.ts';

// Each command lives in its own module; add it here in the order `fleet --help` lists them.
export const COMMANDS: RegisterCommand[] = [registerValidate, registerPlan, registerPolicy, registerServe];
