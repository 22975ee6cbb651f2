export {
  SimDriver,
  createSimDriver,
  observedState,
  parseSimState,
  readSimState,
  seededRandom,
  simDriverFactory,
  simLogFile,
  simStateFile,
  type SimOptions,
  type SimState,
} from './sim.ts';
