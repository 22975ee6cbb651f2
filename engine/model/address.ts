
// A member's address, `<fleet>/<index>`. This module is the only place the
// text form is spelled: everything else parses or formats through it, so a
// change of form (or of what a fleet name may contain) happens here once.

/** A fleet member: the fleet's name and the member's index in it. */
export interface VmAddress {
  readonly fleet: string;
  readonly index: number;
}

/** A fleet name, as fleet.schema.json's metadata.name: lower-case letters, digits and dashes, starting with a letter, at most 40 characters. */
const FLEET_NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** True when the text can name a fleet (a spec's, so a record's). */
export function isFleetName(text: string): boolean {
  return FLEET_NAME.test(text);
}

/** Index text: a whole number without a sign or leading zeros, at most 9 digits. */
const INDEX = /^(0|[1-9]\d{0,8})$/;

/** `web/3`. */
export function formatVmAddress(fleet: string, index: number): string;
export function formatVmAddress(address: VmAddress): string;
export function formatVmAddress(a: string | VmAddress, index?: number): string {
  return typeof a === 'string' ? `${a}/${index}` : `${a.fleet}/${a.index}`;
}

/**
 * `web/3` -> { fleet: 'web', index: 3 }; undefined when the text is not an
 * address. The fleet is everything before the last slash (it may hold slashes).
 */
export function parseVmAddress(text: string): VmAddress | undefined {
  const slash = text.lastIndexOf('/');
  if (slash <= 0) return undefined;
  const idx = text.slice(slash + 1);
  if (!INDEX.test(idx)) return undefined;
  return { fleet: text.slice(0, slash), index: Number(idx) };
}

/** True when the text is a member address (as opposed to a fleet name). */
export function isVmAddress(text: string): boolean {
  return parseVmAddress(text) !== undefined;
}
