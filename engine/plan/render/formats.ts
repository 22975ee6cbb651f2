// The formats `fleet plan --format` renders (render/index.ts renderPlan), in a
// module of their own so the CLI can list them without loading the renderers.
export type PlanFormat = 'text' | 'json' | 'markdown';
export const PLAN_FORMATS: readonly PlanFormat[] = ['text', 'json', 'markdown'];
