// The closed set of cloud operations a lifecycle edge may name (the policy
// pack's `operation`), and of the calls a driver answers. A pack naming any
// other operation is refused at load with a located diagnostic
// (policy.unknown-operation): a typo must never reach apply.
//
// If you add an operation here, also add it to every driver
// (providers/drivers/*), to the DMZ client's dispatch, and to docs/policy.md.

/** Driver calls that carry a VM along an edge. */
export const EDGE_OPERATIONS = ['createVm', 'powerOn', 'boot', 'awaitReady', 'shutdown', 'powerOff', 'resize', 'deleteVm'] as const;

/** Every call a driver answers: the edge operations and the two reads. */
export const DRIVER_CALLS = [...EDGE_OPERATIONS, 'get', 'list'] as const;
export type DriverCall = (typeof DRIVER_CALLS)[number];

/** What a lifecycle edge does in the cloud: one driver call, or `none` when only the record changes. */
export type Operation = (typeof EDGE_OPERATIONS)[number] | 'none';

export const OPERATIONS: readonly Operation[] = [...EDGE_OPERATIONS, 'none'];

export function isOperation(s: string): s is Operation {
  return (OPERATIONS as readonly string[]).includes(s);
}

export function isDriverCall(s: string): s is DriverCall {
  return (DRIVER_CALLS as readonly string[]).includes(s);
}
