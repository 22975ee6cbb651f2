// `pulumi up` in this folder: the DMZ of each Azure data center (program.ts).
import { deploy, readConfig } from './program.ts';

const d = deploy(readConfig());
/** Each data center's stack.yaml entry (URL, location, hardware, capacity, token variable, driver and broker principal). */
export const dataCenters = d.dataCenters;
/** A whole stack.yaml for these data centers: `pulumi stack output stackYaml > ../<name>/stack.yaml`. */
export const stackYaml = d.stackYaml;
