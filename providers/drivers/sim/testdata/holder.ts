// A second process that opens a simulated data center and holds it until its
// stdin closes (sim.test.ts: one owner at a time).
import { createSimDriver } from '../sim.ts';

const [stateDir, dataCenter] = process.argv.slice(2);
const d = await createSimDriver({ dataCenter, stateDir, latencyMs: 0 });
process.stdout.write(`ready ${process.pid}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void d.close().then(() => process.exit(0));
});
