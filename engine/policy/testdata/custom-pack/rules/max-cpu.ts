// A custom rule: no member may have more than `maxCpu` vCPU.
import type { Rule } from '../../../types.ts';

const rule: Rule = {
  name: 'max-cpu',
  description: 'Members may have at most maxCpu vCPU.',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['maxCpu'],
    properties: { maxCpu: { type: 'integer', minimum: 1 } },
  },
  checkChange(change, ctx) {
    const max = ctx.config.maxCpu as number;
    if (change.action === 'delete' || change.size.cpu <= max) return [];
    return [{ address: change.address, message: `${change.size.cpu} vCPU is more than ${max}.`, hint: 'Pick a smaller size.' }];
  },
};

export default rule;
