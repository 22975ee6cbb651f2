// A second process that opens a simulated data center and holds it until its
// stdin closes (sim.test.ts: one owner at a time).
import { createSimDriver } from '../open.ts';
import { credentialKey } from '../../../../protocol/index.ts';

const [stateDir, dataCenter] = process.argv.slice(2);
// Only holds the data center open: no calls, so any key will do.
const d = await createSimDriver({ dataCenter, stateDir, latencyMs: 0, credentialKey: credentialKey('holder', dataCenter) });
process.stdout.write(`ready ${process.pid}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void d.close().then(() => process.exit(0));
});
