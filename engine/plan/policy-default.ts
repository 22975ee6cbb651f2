// The policy the planner uses unless told otherwise. Until engine/policy
// lands this is the no-rules stand-in; it then binds engine/policy's functions.
import { noRulesPolicy, type PlanPolicy } from './policy-port.ts';

export const defaultPolicy: PlanPolicy = noRulesPolicy;
