// A custom rule that always throws, to show a broken rule never crashes a plan.
import type { Rule } from '../../../types.ts';

export default [
  {
    name: 'explodes',
    description: 'Throws on every plan.',
    configSchema: { type: 'object' },
    checkPlan() {
      throw new Error('boom');
    },
  },
] satisfies Rule[];
