export {
  SimDriver,
  createSimDriver,
  observedState,
  parseSimState,
  readSimState,
  seededRandom,
  simLogFile,
  simStateFile,
  type SimOptions,
  type SimState,
} from './sim.ts';
