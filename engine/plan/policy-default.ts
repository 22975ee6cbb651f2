// The policy the planner uses unless told otherwise: engine/policy's functions.
import { capacityEnforcement, capacityGrantFor, capacityLeft, evaluateRules, ownerQuota } from '../policy/index.ts';
import type { PlanPolicy } from './policy-port.ts';

export const defaultPolicy: PlanPolicy = { evaluateRules, ownerQuota, capacityLeft, capacityEnforcement, capacityGrantFor };
