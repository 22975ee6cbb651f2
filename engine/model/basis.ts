/**
 * What a plan was computed against: the record versions of the VMs and
 * fleets it acts on. Apply refuses the plan if any of it changed (the
 * record's checkBasis); the plan document carries it as `basis`.
 */
export interface PlanBasis {
  /**
   * VM id -> record version, for every existing VM a change acts on (not
   * noops: a write to any member bumps its fleet's version, in `fleets`).
   */
  vms: Record<string, number>;
  /** Fleet name -> fleet version in the record (0 when the record has no such fleet yet). */
  fleets: Record<string, number>;
}
