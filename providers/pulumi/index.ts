// Pulumi resources over the per-data-center providers: a Vm, a Fleet, and the
// plain-data stack they are built from. Only Pulumi programs import this
// folder; the CLI never does (it needs no @pulumi/pulumi at run time).
export { Vm, VmProvider, providerFor, type VmArgs, type VmResourceInputs, type VmResourceOutputs } from './vm.ts';
export { Fleet, FleetProvider, type FleetArgs, type FleetInputs, type FleetMember, type FleetOutputs, type FleetSpecArg, type FleetSpecArgInputs, type FleetSpecInputs } from './fleet.ts';
export { loadFleetStack, providerOptions, toFleetStack, type FleetStack, type FleetStackDataCenter, type LoadFleetStackOptions } from './stack.ts';
