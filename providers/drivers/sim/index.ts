export { SimDriver, observedState, seededRandom } from './sim.ts';
export { createSimDriver, simDriverFactory } from './open.ts';
export { SIM_READY_TIMEOUT_MS, simBootWindowMs, type SimOptions } from './options.ts';
export { parseSimState, readSimState, simLogFile, simStateFile, type SimState } from './state-file.ts';
