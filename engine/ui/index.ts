export { registerUi, uiFrameworkErrors, uiSessionBinding, type UiOptions, type UiRole } from './server.ts';
export type { UiSource } from './source.ts';
export type { UiBoot, UiHistory, UiJournal, UiLock, UiPlan, UiVm } from './pages.ts';
export { lifecycleSvg, type DiagramInput } from './diagram.ts';
export { recordSource, type UiRecord } from './record-source.ts';
