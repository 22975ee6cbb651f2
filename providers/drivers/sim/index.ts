export { SimDriver, createSimDriver, observedState, seededRandom, simStateFile, type SimOptions } from './sim.ts';
