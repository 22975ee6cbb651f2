/** A resource as the program declared it. */
export interface DeclaredResource {
  /** Pulumi type token, e.g. `aws:ec2/securityGroup:SecurityGroup`. */
  type: string;
  name: string;
  // Inputs are whatever the provider's schema says; checks read them defensively.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  inputs: Record<string, any>;
}

/** A source admitted on a port: the only inbound flows a DMZ may have. */
export interface Admitted {
  port: number;
  cidr: string;
  why: string;
}

/** One security property: its name and the violations found. */
export interface Check {
  property: string;
  run(resources: readonly DeclaredResource[]): string[];
}

export interface CheckReport {
  property: string;
  violations: string[];
}

export function runChecks(checks: readonly Check[], resources: readonly DeclaredResource[]): CheckReport[] {
  return checks.map((c) => ({ property: c.property, violations: c.run(resources) }));
}

/** Sources that mean "anyone". */
export const OPEN_SOURCES = new Set(['0.0.0.0/0', '::/0', '*', 'Internet', 'Any', 'any', 'internet']);

export const ofType = (rs: readonly DeclaredResource[], type: string) => rs.filter((r) => r.type === type);

/** Missing or different tags, as text; empty when every wanted tag is there. */
export function missingTags(r: DeclaredResource, wanted: Record<string, string>): string[] {
  const tags = (r.inputs.tags ?? {}) as Record<string, string>;
  return Object.entries(wanted)
    .filter(([k, v]) => tags[k] !== v)
    .map(([k, v]) => `${k}=${v}`);
}
