// The wire contract between the CLI, the DMZ clients and the authority
// (docs/protocol.md): the route schemas (the one source), the types generated
// from them, the wire error registry, and the HTTP layer both services share.
// The authority and the DMZ client import this folder; neither imports the other.
export type * from './types.ts';
import type { ObservedAgent } from './types.ts';
/** What a DMZ client knows of a VM's boot agent and keeps (a driver's report, the sim's VM): ObservedAgent but `unknown`, which only a listing answers. */
export type AgentState = Exclude<ObservedAgent, 'unknown'>;
export * from './schemas/common.ts';
export * from './schemas/authority.ts';
export * from './schemas/dmz-client.ts';
export * from './schemas/plans.ts';
export * from './errors.ts';
export { adminCheckHolds, adminCheckProof, overrideProof, randomBase64url, sha256, sameSecret } from './hash.ts';
export { credentialKey, scopedTokenProblem, signScopedToken } from './scoped-token.ts';
export { LINES_LINGER_MS, NO_LINE, REQUEST_RECEIPT_MS, closeGracefully, createService, doc, receiptBound, errorAnswer, listen, streamAnswers, tokenTable, track, type LineAnswer, type Part, type ServiceOptions } from './http.ts';
export * from './refusal-limit.ts';
