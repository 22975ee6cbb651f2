import type { RegisterCommand } from './types.ts';
import { registerApply } from './apply.ts';
import { registerCompletion } from './completion.ts';
import { registerPlan } from './plan.ts';
import { registerRefresh } from './refresh.ts';
import { registerHistory } from './history.ts';
import { registerImport } from './import.ts';
import { registerPolicy } from './policy.ts';
import { registerRecord } from './record.ts';
import { registerServe } from './serve.ts';
import { registerState } from './state.ts';
import { registerUi } from './ui.ts';
import { registerUnlock } from './unlock.ts';
import { registerValidate } from './validate.ts';

// Each command lives in its own module; add it here in the order `fleet --help` lists them.
export const COMMANDS: RegisterCommand[] = [registerValidate, registerPlan, registerApply, registerRefresh, registerState, registerImport, registerHistory, registerPolicy, registerUnlock, registerRecord, registerServe, registerUi, registerCompletion];
