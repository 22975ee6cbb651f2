// Tamper-evident plans (DESIGN.md, "The plan document"; issue: trust).
//
// A saved plan is a file a person or a CI job can edit. Nothing in it is
// trusted because it says so: `fleet apply PLANFILE` checks that
// - the seal verifies: an HMAC-SHA256 over the plan's canonical content (every
//   field but the seal itself), with a key only the record's holders have, so
//   an edited `blocked`, an added change or a swapped vmId breaks it;
// - the plan belongs to this stack's record (its stack id, not only its name:
//   two stacks may share a name);
// - every change stays inside the plan's scope: its fleet is one of the
//   plan's `fleets` (so it is locked and stale-checked), and the basis holds
//   every VM and fleet it changes.
// The checks are pure functions over the plan and the key; the record keeps
// the key and the stack id, and apply calls these before taking any lock.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { type Diagnostic, clip, clipPath, diag } from '../diags/index.ts';
import { formatVmAddress } from '../model/index.ts';
import type { VmRow } from '../record/types.ts';
import { canonicalText, writeCanonicalJson } from './json-text.ts';
import type { PlanDocument, PlanSeal } from './types.ts';

export type { PlanSeal };

/** A signing key: its id and secret bytes. Never written to a plan, a log or a diagnostic. */
export interface SealKey {
  id: string;
  secret: Buffer;
}

/**
 * JSON with object keys sorted at every depth and no whitespace: the same
 * text for the same content however it was written or re-indented.
 * Undefined members are dropped, as JSON.stringify drops them.
 * (./json-text.ts writes it, also in pieces for a big plan's digest.)
 */
export function canonicalJson(value: unknown): string {
  return canonicalText(value);
}

/** A plan as read from a file: its seal, if any, is not trusted to have the seal's shape. */
type AnySeal = Omit<PlanDocument, 'seal'> & { seal?: unknown };

/** The plan's content without its seal. */
function content(plan: AnySeal): Omit<PlanDocument, 'seal'> {
  const { seal: _seal, ...rest } = plan;
  return rest;
}

/** sha256 hex of the plan's canonical content (its seal left out). */
export function planContentDigest(plan: AnySeal): string {
  // Hashed a piece at a time: a first import's canonical text is 100 MB.
  const hash = createHash('sha256');
  writeCanonicalJson(content(plan), (piece) => hash.update(piece));
  return hash.digest('hex');
}

function mac(key: SealKey, digest: string, stackId: string): string {
  return createHmac('sha256', key.secret).update(`dmzfleet-plan-v1\0${stackId}\0${digest}`).digest('base64url');
}

/** The seal for a plan, made when it is saved. */
export function sealPlan(plan: AnySeal, key: SealKey, stackId: string): PlanSeal {
  const digest = planContentDigest(plan);
  return { alg: 'hmac-sha256', stackId, keyId: key.id, digest, signature: mac(key, digest, stackId) };
}

export interface VerifyContext {
  /** The file the plan was read from, for diagnostics. */
  file: string;
  /** This stack's name and id in its record. */
  stack: string;
  stackId: string;
  /** Looks a key up by id; undefined when the record has no such key. */
  key(id: string): SealKey | undefined;
}

/**
 * Every reason not to trust a saved plan, as diagnostics (empty when it may
 * be applied): no or malformed seal, another stack, unknown key, content that
 * does not match its digest, a signature that does not verify.
 */
export function verifySeal(plan: AnySeal, ctx: VerifyContext): Diagnostic[] {
  const where = { file: ctx.file };
  const seal = plan.seal as Partial<PlanSeal> | undefined;
  if (!seal || typeof seal !== 'object') {
    return [diag('apply.plan-unsigned', `${clipPath(ctx.file)} has no seal: only plans saved by \`fleet plan --out\` for this stack can be applied. Plan again and apply the new file.`, where)];
  }
  if (seal.alg !== 'hmac-sha256' || typeof seal.signature !== 'string' || typeof seal.digest !== 'string' || typeof seal.keyId !== 'string' || typeof seal.stackId !== 'string') {
    return [diag('apply.plan-tampered', `${clipPath(ctx.file)}: the seal is malformed (alg, stackId, keyId, digest and signature are required).`, where)];
  }
  if (plan.stack !== ctx.stack || seal.stackId !== ctx.stackId) {
    return [
      diag(
        'apply.plan-foreign',
        `${clipPath(ctx.file)} was made for stack ${clip(plan.stack)} (id ${clip(seal.stackId)}), not for this stack ${ctx.stack} (id ${ctx.stackId}); a plan applies only to the stack and record it was made against.`,
        where,
      ),
    ];
  }
  const key = ctx.key(seal.keyId);
  if (!key) {
    return [diag('apply.plan-foreign', `${clipPath(ctx.file)} was sealed with key ${clip(seal.keyId)}, which this stack's record does not hold; plan again.`, where)];
  }
  const digest = planContentDigest(plan);
  const want = Buffer.from(mac(key, seal.digest, ctx.stackId));
  const got = Buffer.from(seal.signature);
  if (want.length !== got.length || !timingSafeEqual(want, got)) {
    return [diag('apply.plan-tampered', `${clipPath(ctx.file)}: the seal's signature does not verify; the file was not sealed by this stack's record.`, where)];
  }
  if (digest !== seal.digest) {
    return [diag('apply.plan-tampered', `${clipPath(ctx.file)} was changed after it was saved: its content no longer matches the digest it was sealed with. Plan again; never edit a saved plan.`, where)];
  }
  return [];
}

/**
 * Changes that leave the plan's scope: a fleet not in `fleets` (it would be
 * neither locked nor stale-checked), an existing VM or fleet the basis does
 * not pin, an address that does not match its fleet and index. A sealed plan
 * made by this code never has any; the check holds even if the key leaked.
 */
export function checkScope(plan: PlanDocument, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const fleets = new Set(plan.fleets);
  for (const c of plan.changes) {
    const where = { file, address: c.address };
    if (!fleets.has(c.fleet)) {
      out.push(diag('apply.plan-scope', `the change to ${clip(c.address)} is in fleet ${clip(c.fleet)}, which is not in the plan's scope (${plan.fleets.map((n) => clip(n)).join(', ') || 'none'}).`, where));
      continue;
    }
    if (c.address !== formatVmAddress(c.fleet, c.index)) {
      out.push(diag('apply.plan-scope', `the change's address ${clip(c.address)} is not member ${c.index} of fleet ${clip(c.fleet)}.`, where));
    }
    if (c.action !== 'noop' && !(c.fleet in plan.basis.fleets)) {
      out.push(diag('apply.plan-scope', `the change to ${clip(c.address)} changes fleet ${clip(c.fleet)}, whose version the plan's basis does not hold, so a change to it since could not be noticed.`, where));
    }
    if (c.action !== 'noop' && c.action !== 'create' && c.vmId && !(c.vmId in plan.basis.vms)) {
      out.push(diag('apply.plan-scope', `the change to ${clip(c.address)} acts on VM ${clip(c.vmId)}, whose version the plan's basis does not hold.`, where));
    }
  }
  // A fleet's protection and owner are written under its lock and stale-checked like its members' changes.
  for (const f of plan.fleetChanges ?? []) {
    const where = { file, address: f.fleet };
    const what = [f.protect ? 'protect' : '', f.owner ? 'owner' : ''].filter(Boolean).join(' and ') || 'settings';
    if (!fleets.has(f.fleet)) out.push(diag('apply.plan-scope', `the ${what} change of fleet ${clip(f.fleet)} is not in the plan's scope (${plan.fleets.map((n) => clip(n)).join(', ') || 'none'}).`, where));
    else if (!(f.fleet in plan.basis.fleets)) out.push(diag('apply.plan-scope', `the ${what} change of fleet ${clip(f.fleet)} changes a fleet whose version the plan's basis does not hold, so a change to it since could not be noticed.`, where));
  }
  return out;
}

/**
 * Changes whose `vmId` names a VM the record holds as another member (of
 * another fleet, index, stack or data center): the request would act on
 * that VM while the plan, its locks and its review say something else.
 * `rows` maps each vmId of the plan's changes to the record's row (absent
 * when the record has none; the stale check reports that one).
 */
export function checkTargets(plan: PlanDocument, rows: ReadonlyMap<string, VmRow>, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const c of plan.changes) {
    if (!c.vmId || c.action === 'create') continue;
    const vm = rows.get(c.vmId);
    if (!vm) continue;
    if (vm.stack !== plan.stack || vm.fleet !== c.fleet || vm.index !== c.index || vm.dataCenter !== c.dataCenter) {
      out.push(
        diag(
          'apply.plan-scope',
          `the change to ${clip(c.address)} in ${clip(c.dataCenter)} acts on VM ${clip(c.vmId)}, which the record holds as ${vm.address} of stack ${vm.stack} in ${vm.dataCenter}; a change acts only on its own member's VM.`,
          { file, address: c.address },
        ),
      );
    }
  }
  return out;
}

/** The vmIds of existing VMs the plan's changes act on (creates have none yet). */
export function actedVmIds(plan: PlanDocument): string[] {
  return [...new Set(plan.changes.flatMap((c) => (c.vmId && c.action !== 'create' ? [c.vmId] : [])))];
}

/** A member a sealed plan changes: what the authority admits requests for once the plan is registered with it. */
export interface ScopeMember {
  address: string;
  dataCenter: string;
  action: string;
  /** The existing VM the change acts on; absent for a create. */
  vmId?: string;
}

/**
 * What a plan may touch, for the authority's gate: its locked fleets and
 * each member it changes (noops left out: a noop sends no request). Built
 * from the plan's changes whatever the format version lists them in, as long
 * as each changed member is a change with address, dataCenter and action.
 */
export function planScope(plan: PlanDocument): { fleets: string[]; members: ScopeMember[] } {
  return {
    fleets: [...plan.fleets].sort(),
    members: plan.changes
      .filter((c) => c.action !== 'noop')
      .map((c) => ({ address: c.address, dataCenter: c.dataCenter, action: c.action, ...(c.vmId && c.action !== 'create' ? { vmId: c.vmId } : {}) })),
  };
}
