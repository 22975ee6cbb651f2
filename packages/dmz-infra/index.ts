// @dmzfleet/dmz-infra: the DMZ of each data center as Pulumi components.
// Import per cloud (`@dmzfleet/dmz-infra/aws`, `/azure`) so a program loads
// only its cloud's SDK modules; this entry holds what both share.
export * from './common.ts';
