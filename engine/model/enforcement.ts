/** How a policy rule counts: a mandatory violation blocks, an advisory one is shown, a disabled rule is not run. */
export type Enforcement = 'advisory' | 'mandatory' | 'disabled';

export const ENFORCEMENTS: readonly Enforcement[] = ['advisory', 'mandatory', 'disabled'];
