// What the authority's parts share: the service shell (authority.ts) builds
// one Core and hands it to the create path (create.ts) and the report path
// (report.ts). Nothing here decides; it is the service's state and its
// batched record writes (see authority.ts for what must stay true).
import type { Batched } from '../durability/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { FleetRecord, InsertItem, TransitionItem, VmRow } from '../record/index.ts';
import type { AuthorizeResponse } from '../../protocol/index.ts';
import type { AheadQueue } from './chain.ts';
import type { ScopedTokenIssuer } from './credentials/scoped.ts';
import type { CredentialBroker } from './credentials/types.ts';
import type { Pending } from './decisions.ts';
import type { Fences, PolicyGate } from './gate.ts';
import type { Capacities } from './policy.ts';
import type { VmRows } from './rows.ts';

export interface AuthorityCoreOptions {
  record: FleetRecord;
  pack: LoadedPack;
  stackName: string;
  /** Secret for disk keys and credentials; must be the same across restarts (see loadOrCreateSecret). */
  secret: string;
  /** Lifetime of scoped credentials. Default 10 minutes. */
  credentialTtlMs?: number;
  /** Cloud credentials of cloud data centers (engine/authority/credentials); none: the scoped token alone (sim). */
  credentialBroker?: CredentialBroker;
  /** The capacity of each data center (stack.yaml dataCenters[].capacity), for datacenter-capacity at the authority (policy.ts). */
  capacity?: Capacities;
  /** Admin tokens: an override's proof is checked against them when the stack accepts overrides from admins only (policy.ts judgeProtect). Never logged. */
  adminTokens?: readonly string[];
  /** Signs the credentials' scoped token per data center (credentials/scoped.ts); absent: keys no DMZ client holds (the core alone, in tests). */
  scopedTokens?: ScopedTokenIssuer;
  /**
   * How many authorities serve this stack's record (default 1). With more,
   * nothing one replica decides rests on what only it remembers: no VM row
   * is kept between calls (every decision on a fresh read) and no edge is
   * approved ahead (an approval ahead is written by the report of the edge
   * before it, which another replica may receive). docs/operations.md, "Replicas".
   */
  replicas?: number;
}

/** The authority's state and writers, as its create and report paths use them. */
export interface Core {
  readonly o: AuthorityCoreOptions;
  /** Approved requests waiting for their report, by data center and request id (pendingKey); reports are checked against them. */
  readonly pending: Map<string, Pending>;
  readonly rows: VmRows;
  /** Per VM, its edges approved ahead (see AdvanceRequest.ahead). */
  readonly ahead: AheadQueue;
  /** Creates, batched (authority.ts). */
  readonly inserts: Batched<InsertItem, VmRow>;
  /** Transitions of reports, batched (authority.ts). */
  readonly transitions: Batched<TransitionItem & { stack: string; fleet: string }, VmRow>;
  readonly fences: Fences;
  readonly policy: PolicyGate;
  /** The credentials of an approval for `dataCenter`. */
  credentials(dataCenter: string, requestId: string): NonNullable<AuthorizeResponse['credentials']>;
}
