// The built-in rules. owner-quota and datacenter-capacity carry only settings
// here: the planner applies them while sizing and placing fleets (see
// ../budget.ts); the others check the finished plan through evaluateRules.
import { isDestructive, type Change } from '../../model/index.ts';
import type { Finding, Rule, RuleContext } from '../types.ts';

const noConfig = { type: 'object', additionalProperties: false, properties: {} };

export const ownerQuotaRule: Rule = {
  name: 'owner-quota',
  description: 'Caps what each owner may hold in the stack (VMs, vCPU, memory); the planner grants fewer members when a fleet would exceed it.',
  defaultEnforcement: 'mandatory',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limits: {
        description: "Each owner's limits, by owner: a fleet's owner as its fleet file names it (1 to 64 characters).",
        type: 'object',
        default: {},
        // As a fleet's metadata.owner (fleet.schema.json): a longer or empty key would hold no fleet to its limits.
        propertyNames: { minLength: 1, maxLength: 64 },
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          properties: {
            vms: { type: 'integer', minimum: 0 },
            cpu: { type: 'number', minimum: 0 },
            memoryGiB: { type: 'number', minimum: 0 },
          },
        },
      },
      unlisted: {
        description:
          'The limits of each owner not listed in `limits`, each on its own (absent: such owners are not limited). `{ vms: 0 }` refuses every create of an owner not listed.',
        type: 'object',
        additionalProperties: false,
        properties: {
          vms: { type: 'integer', minimum: 0 },
          cpu: { type: 'number', minimum: 0 },
          memoryGiB: { type: 'number', minimum: 0 },
        },
      },
    },
  },
};

export const datacenterCapacityRule: Rule = {
  name: 'datacenter-capacity',
  description: "Keeps each data center within the stack's capacity; placement moves new members elsewhere, then grants fewer.",
  defaultEnforcement: 'mandatory',
  configSchema: noConfig,
};

/** Whether fleet `name` is protected: its spec says so, or (no spec any more) the record does. */
export function isProtected(name: string, ctx: Pick<RuleContext, 'fleets' | 'protectedFleets'>): boolean {
  const fleet = ctx.fleets.find((f) => f.name === name);
  return fleet ? fleet.protect : (ctx.protectedFleets?.has(name) ?? false);
}

export const protectRule: Rule = {
  name: 'protect',
  description:
    'Members of a fleet with `protect: true` (or, once applied so, kept protected by the record when its spec is gone) are never deleted or replaced unless the plan names the fleet in --allow-destroy; the authority checks it again per request. `override: admin` accepts the override only with the admin token.',
  defaultEnforcement: 'mandatory',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: { override: { type: 'string', enum: ['any', 'admin'], default: 'any' } },
  },
  checkChange(change: Change, ctx: RuleContext): Finding[] {
    if (!isDestructive(change.action)) return [];
    if (!isProtected(change.fleet, ctx) || ctx.allowDestroy.has(change.fleet)) return [];
    const verb = change.action === 'delete' ? 'be deleted' : 'be replaced (deleted and created again)';
    const spec = ctx.fleets.some((f) => f.name === change.fleet);
    const admin = ctx.config.override === 'admin' ? ' with FLEET_ADMIN_TOKEN set' : '';
    return [
      {
        address: change.address,
        message: spec
          ? `${change.address} would ${verb}, but fleet ${change.fleet} is protected.`
          : `${change.address} would ${verb}, but fleet ${change.fleet} is protected in the record (it was applied with protect: true; removing its spec does not remove that).`,
        hint: spec
          ? `Review the change, then run with --allow-destroy ${change.fleet}${admin} (or set protect: false in the spec).`
          : `Review the change, then run with --allow-destroy ${change.fleet}${admin} (or apply the fleet's spec with protect: false first).`,
      },
    ];
  },
};

export const allowedImagesRule: Rule = {
  name: 'allowed-images',
  description: "A new or rebuilt member's logical image must have an entry for its data center in the pack's image catalog.",
  defaultEnforcement: 'mandatory',
  configSchema: noConfig,
  checkChange(change: Change, ctx: RuleContext): Finding[] {
    if (change.action !== 'create' && change.action !== 'replace' && change.action !== 'update') return [];
    const entry = ctx.images[change.image.logical];
    if (entry && Object.hasOwn(entry, change.dataCenter)) return [];
    const known = Object.keys(ctx.images).filter((img) => Object.hasOwn(ctx.images[img], change.dataCenter));
    return [
      {
        address: change.address,
        message: entry
          ? `Image ${change.image.logical} is not available in data center ${change.dataCenter}.`
          : `Image ${change.image.logical} is not in the image catalog.`,
        hint: `Use one of ${known.length ? known.join(', ') : '(none)'} for ${change.dataCenter}, restrict placement, or add the image to the pack's catalog.`,
      },
    ];
  },
};

/** True when every `match` label is on the fleet; an empty match selects every fleet. */
export function labelsMatch(labels: Readonly<Record<string, string>>, match: Readonly<Record<string, string>>): boolean {
  return Object.entries(match).every(([k, v]) => labels[k] === v);
}

export const requireEncryptedDiskRule: Rule = {
  name: 'require-encrypted-disk',
  description:
    'Fleets whose labels match `match` must set `encryptedDisk: true`. With an empty `match` (every fleet) the authority also refuses every unencrypted create (labels are not in the record, so a label match is judged in the plan only).',
  defaultEnforcement: 'disabled',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: { match: { type: 'object', default: {}, additionalProperties: { type: 'string' } } },
  },
  checkPlan(plan, ctx): Finding[] {
    const match = (ctx.config.match ?? {}) as Record<string, string>;
    const out: Finding[] = [];
    for (const name of plan.fleets) {
      const fleet = ctx.fleets.find((f) => f.name === name);
      if (!fleet || fleet.count === 0 || fleet.encryptedDisk || !labelsMatch(fleet.labels, match)) continue;
      const sel = Object.entries(match).map(([k, v]) => `${k}=${v}`).join(', ') || 'every fleet';
      out.push({
        address: name,
        message: `Fleet ${name} matches ${sel} but does not set encryptedDisk.`,
        hint: `Set spec.encryptedDisk: true in fleet ${name} (changing it replaces the members).`,
      });
    }
    return out;
  },
  checkRequest(req, ctx): Finding[] {
    const match = (ctx.config.match ?? {}) as Record<string, string>;
    if (req.kind !== 'create' || req.encryptedDisk || Object.keys(match).length > 0) return [];
    return [{ address: req.address, message: `${req.address} would be created without an encrypted disk.`, hint: `Set spec.encryptedDisk: true in fleet ${req.fleet}.` }];
  },
};

/**
 * max-disruption judges how many serving members a plan takes out of
 * service at once. A plan with a rollout (engine/plan/waves.ts) takes them
 * out wave by wave, so the rule counts the members that leave for good
 * (deleted, or sent to another state) plus each wave's members out of
 * service, against the members serving when that wave starts: those serving
 * now, and those the waves before it brought into the state (a higher
 * count's new members, a stopped rollout's failed ones: apply starts a wave
 * only once the one before is done), less the failures the rollout may have
 * let pass (failureThreshold - 1). A change left without a wave counts as
 * leaving at once, as in a plan made before rollouts. A mandatory rule
 * therefore blocks only what no wave order satisfies: the planner already
 * sized the waves to it (to the members serving now: never wider than this
 * allows).
 */
export const maxDisruptionRule: Rule = {
  name: 'max-disruption',
  description: "At most `maxShare` of a fleet's members currently in `state` (default Running) may be out of it at once: the default of each fleet's rollout.maxUnavailable, which waves the change; mandatory, it caps maxUnavailable and blocks only what no wave order satisfies.",
  defaultEnforcement: 'advisory',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxShare: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
      state: { type: 'string', minLength: 1, default: 'Running' },
    },
  },
  checkPlan(plan, ctx): Finding[] {
    const maxShare = (ctx.config.maxShare as number | undefined) ?? 0.5;
    const state = (ctx.config.state as string | undefined) ?? 'Running';
    interface Count {
      running: number;
      /** Leaving for good, or with no wave (all at once). */
      atOnce: number;
      /** Per wave: members out of `state` in it. */
      waves: Map<number, number>;
      /** Per wave: members it brings into `state` (created, or back from another state). */
      brought: Map<number, number>;
    }
    const perFleet = new Map<string, Count>();
    const rolled = new Set((plan.rollouts ?? []).map((r) => r.fleet));
    // Members summarised as unchanged serve on, and count among the fleet's serving members.
    const unchangedServing = new Map(plan.unchanged.map((u) => [u.fleet, u.states[state] ?? 0]));
    const count = (fleet: string): Count => {
      let n = perFleet.get(fleet);
      if (!n) perFleet.set(fleet, (n = { running: unchangedServing.get(fleet) ?? 0, atOnce: 0, waves: new Map(), brought: new Map() }));
      return n;
    };
    // A deposed old VM serves its member only until the member's own VM, which the plan brings back to `state` or
    // leaves there unchanged, takes over (apply deletes the old one only once that VM is back): its delete hands
    // the member over, it takes no member out. One whose member the plan deletes or sends elsewhere leaves for good.
    const stays = new Set<string>();
    const goes = new Set<string>();
    for (const c of plan.changes) if (!c.deposed) (c.action !== 'delete' && c.to === state ? stays : goes).add(c.address);
    const handedOver = (c: (typeof plan.changes)[number]) =>
      stays.has(c.address) || (!goes.has(c.address) && (unchangedServing.get(c.fleet) ?? 0) > 0);
    for (const c of plan.changes) {
      if (c.deposed && handedOver(c)) {
        if (c.from === state) count(c.fleet).running++;
        continue;
      }
      if (c.action === 'create' || c.from !== state) {
        if (c.to === state && c.wave !== undefined && c.action !== 'delete') {
          const { brought } = count(c.fleet);
          brought.set(c.wave, (brought.get(c.wave) ?? 0) + 1);
        }
        continue;
      }
      const n = count(c.fleet);
      n.running++;
      const leaves = isDestructive(c.action) || c.path.some((s) => s !== state);
      if (!leaves) continue;
      const forGood = c.action === 'delete' || c.to !== state;
      // A replace whose new VM runs first never takes the member out of service.
      const stays = c.action === 'replace' && c.replaceOrder === 'create-before-delete' && c.wave !== undefined;
      // A change of a fleet that rolls out, left without a wave, is one its waves could not place (maxUnavailable 0,
      // the spec's or this rule's, and no surge VM): the waves' own mandatory violation blocks the plan and says
      // why. Counted here as well it added a second finding whose hint ("steps of at most 1 member") was wrong.
      if (!forGood && c.wave === undefined && rolled.has(c.fleet)) continue;
      if (forGood || c.wave === undefined) n.atOnce++;
      else if (!stays) n.waves.set(c.wave, (n.waves.get(c.wave) ?? 0) + 1);
    }
    const tolerated = new Map((plan.rollouts ?? []).map((r) => [r.fleet, Math.max(0, r.failureThreshold - 1)]));
    const out: Finding[] = [];
    for (const [fleet, n] of perFleet) {
      // The wave that leaves the fewest members serving for its share: serving when it starts, and leaving at once.
      let worst = { wave: 0, out: 0, serving: n.running, before: 0 };
      let worstExcess = n.atOnce - maxShare * n.running;
      for (const [wave, outInWave] of [...n.waves].sort((a, b) => a[0] - b[0])) {
        let before = 0;
        for (const [w, k] of n.brought) if (w < wave) before += k;
        const serving = n.running + before - Math.min(before, tolerated.get(fleet) ?? 0);
        const excess = n.atOnce + outInWave - maxShare * serving;
        if (excess > worstExcess || (worst.wave === 0 && excess >= worstExcess)) {
          worst = { wave, out: outInWave, serving, before: serving - n.running };
          worstExcess = excess;
        }
      }
      if (worstExcess <= 0) continue;
      const leaving = n.atOnce + worst.out;
      const allowed = Math.floor(maxShare * worst.serving);
      // What a wave may take out beside the members leaving for good.
      const perWave = allowed - n.atOnce;
      const widest = Math.max(0, ...n.waves.values());
      const where = worst.out === widest && worst.before === 0 ? 'its widest wave' : `wave ${worst.wave}`;
      const how =
        n.waves.size === 0
          ? ' in this plan'
          : worst.wave === 0
            ? ` at once (${n.atOnce} for good, before its waves)`
            : ` at once (${worst.out} in ${where}${n.atOnce ? `, ${n.atOnce} for good` : ''}${worst.before ? `; ${worst.before} more serving by then` : ''})`;
      const raise = "raise max-disruption.maxShare in the stack's policyPack.config.";
      const members = (k: number) => `${k} member${k === 1 ? '' : 's'}`;
      // No maxUnavailable of 1 or more fits beside what leaves for good: only surge VMs, or a smaller plan, do.
      const noPlace =
        n.atOnce > 0
          ? `The ${members(n.atOnce)} of ${fleet} leaving for good ${n.atOnce === 1 ? 'takes' : 'take'} every place maxShare ${maxShare} of ${worst.serving} ${state} allows (${allowed})`
          : `maxShare ${maxShare} of ${worst.serving} ${state} member${worst.serving === 1 ? '' : 's'} of ${fleet} allows none out at once`;
      out.push({
        address: fleet,
        message: `${leaving} of ${worst.serving} ${state} members of fleet ${fleet} would leave ${state}${how} (at most ${allowed}, maxShare ${maxShare}).`,
        hint:
          n.waves.size === 0
            ? `Make the change in steps of at most ${Math.max(1, allowed)} member(s) of ${fleet} per plan, or ${raise}`
            : perWave >= 1
              ? `Lower spec.rollout.maxUnavailable of ${fleet} to ${perWave} or less${n.atOnce ? ` (${n.atOnce} leave${n.atOnce === 1 ? 's' : ''} for good beside its waves)` : ''}, or ${raise}`
              : `${noPlace}: only replacements by surge VMs keep its members serving (spec.rollout.maxUnavailable 0 and a maxSurge, with room in the data center), ${n.atOnce ? 'or lower the count in a plan of its own first, ' : ''}or ${raise}`,
      });
    }
    return out;
  },
};

/** Every built-in rule, in the order reports list them. */
export const BUILTIN_RULES: readonly Rule[] = [
  ownerQuotaRule,
  datacenterCapacityRule,
  protectRule,
  allowedImagesRule,
  requireEncryptedDiskRule,
  maxDisruptionRule,
];
