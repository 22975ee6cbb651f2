// The boot endpoint's limit of denials per source address (docs/dmz-client.md,
// "The boot endpoint's limit"). POST /v1/boot and /v1/boot/status are open to
// anything on the fleet's subnet: a VM has no credential but its one-time boot
// token. Every denied boot costs an authority call and writes a boot-attempt
// row and a history row in the record, so a caller sending bad tokens without
// end floods both. The DMZ client counts each address's DENIALS (a boot
// answered `approved: false`, a status report refused, a request refused as
// malformed: any 4xx answer) in a fixed window; once an address has used its
// budget, its boot requests are answered 429 `boot-rate-limited` until the
// window ends, without asking the authority and without writing anything.
//
// An approval is never counted, so a healthy fleet, however large, never
// meets the limit (the sim's agents all come from 127.0.0.1: a 10 000-VM
// apply is one address with no denials). The limiter, its table bound and
// its strict windows are protocol/refusal-limit.ts (BootLimiter), shared with
// the authority's limit of refused admin checks per data center; this file
// holds the DMZ client's settings.

import type { BootLimitSettings } from '../../protocol/index.ts';

export { BootLimiter, judge, type BootJudgement, type BootLimitSettings, type BootRefusal, type BootTicket, type BootWindow } from '../../protocol/index.ts';

/**
 * The defaults: 30 denials per 30 s per address, 10 000 addresses (about
 * 1.2 MB, about 125 bytes each). A VM boots with one token and asks a handful of times at most; the
 * boot agent asks again after a 429's Retry-After (at most 60 s a try, 12
 * tries, within its boot window: agentWindowSeconds in providers/boot-agent), and for 55 s without one (12 tries, 5 s apart), longer than a
 * window, so a VM refused because another caller shares its address (NAT)
 * still boots once the window ends.
 */
export const BOOT_LIMIT_DEFAULTS: Readonly<BootLimitSettings> = Object.freeze({ denials: 30, windowMs: 30_000, maxAddresses: 10_000 });

/**
 * The limit of the DMZ client's POST /v1/admin-check (routes.ts), with the
 * same limiter: an address may have 5 refused checks (a proof not made with
 * the authority's admin token, a malformed body) per minute, then its checks
 * are answered 429 admin-check-rate-limited until the window ends, without
 * asking the authority. `fleet apply` asks once per data center per apply;
 * a correct check is never counted. Guessing the admin token through a DMZ
 * client is so no cheaper than through the authority's own route, which takes
 * the CLI's token at the authority (and a token of 32 random bytes is beyond
 * guessing at any rate: the limit keeps the authority's log and CPU quiet).
 * Behind it, the authority limits the refused checks of each data center
 * (AUTHORITY_ADMIN_CHECK_LIMIT, engine/authority/server.ts), whatever
 * addresses they came from: a 429 of its own, which this client passes on,
 * and then answers itself until its Retry-After has passed (routes.ts).
 */
export const ADMIN_CHECK_LIMIT: Readonly<BootLimitSettings> = Object.freeze({ denials: 5, windowMs: 60_000, maxAddresses: 1_000 });

