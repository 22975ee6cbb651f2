import type { Command } from 'commander';
import { clip, diag, fail, FleetError, quote, sortDiagnostics, unseenProblem, visible, type Diagnostic } from '../../diags/index.ts';
import { parseVmAddress, sameSize } from '../../model/index.ts';
import type { Lifecycle } from '../../policy/types.ts';
import type { VmRow } from '../../record/index.ts';
import type { ActualVm } from '../../../protocol/index.ts';
import { modeOf, printDiagnostics, runCommand, writeJson } from '../io.ts';
import { formatOption, loaderEnv, recordUrlOption, stackOption } from '../options.ts';
import { addressArg, withFleetLock } from './state.ts';
import type { RegisterCommand } from './types.ts';

interface ImportCliOptions {
  stack: string;
  recordUrl?: string;
  format: string;
  dataCenter?: string;
}

/**
 * `fleet import ADDRESS CLOUD_ID`: adopt a VM that exists in a data center
 * into a member of a fleet of the specs (a VM the record knows, forgotten by
 * `fleet state rm`, or whose cloud tags name a member, only back into that
 * member: not into another fleet, nor at another index of its own). The data center's DMZ client is
 * asked for it (by cloud id, or by VM id); it becomes the live VM at the
 * address in the state its cloud reports, with a history row (outcome
 * `imported`), under the fleet's lock. What the spec wants differently
 * (the state, the size, an image that is not the catalog's for that data
 * center) is left to the next plan: an imported VM whose image or disk
 * does not match is recorded under a spec hash of its own, so that plan
 * replaces it instead of taking it for a match.
 */
export const registerImport: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('import')
    .description('Adopt a VM that exists in a data center into a member of a fleet (recorded in history).')
    .argument('<address>', 'the member it becomes, <fleet>/<index>')
    .argument('<cloudId>', 'the cloud id of the VM in its data center (or its VM id)')
    .option('--data-center <name>', 'look only in this data center (default: every data center of the stack)')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (address: string, cloudId: string, opts: ImportCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(await runCommand(io, () => runImport(io, address, cloudId, opts, mode), mode));
    });
};

/**
 * What says the boot a running VM's cloud reports it in completed its
 * handshake (the boot endpoint released its disk key):
 *
 * | evidence     | what                                                                    |
 * | ------------ | ----------------------------------------------------------------------- |
 * | agent-ready  | its DMZ client holds its agent's ready report of the VM's current run    |
 * |              | (ActualVm.agent `ready`; a report before its latest start reads         |
 * |              | `unknown`: providers/drivers/agent-ledger.ts, isCurrentReport)          |
 * | authorized   | the record confirms it: it held the VM in a state of that boot when      |
 * |              | `fleet state rm` forgot it, and that boot's token was used, approved    |
 * |              | for this cloud id after the VM's latest start (ActualVm.startedAt;      |
 * |              | BootStore.bootAuthorized)                                               |
 * | none         | neither (agent `unknown`: its DMZ client restarted without its state    |
 * |              | folder, another client booted it, or its report is of a run before the  |
 * |              | VM's latest start; a VM the record never booted; a boot whose token no  |
 * |              | agent presented yet; an approval before the VM's latest start: started  |
 * |              | again from the cloud's console, its agent presents a used token)        |
 */
export type BootEvidence = 'agent-ready' | 'authorized' | 'none';

/**
 * The state an import records a VM its cloud reports in `observed`:
 *
 * | observed                                       | evidence     | recorded                                  |
 * | ---------------------------------------------- | ------------ | ----------------------------------------- |
 * | a state a `boot` edge enters (Starting):       | any          | the failure state one edge from it        |
 * | booting                                        |              | (BootFailed); none: refused               |
 * | a state a booting state leads to, not a        | agent-ready, | as observed                               |
 * | failure (Running): its boot's handshake done   | authorized   |                                           |
 * | as above                                       | none         | the failure state one edge from that      |
 * |                                                |              | booting state (BootFailed); none: refused |
 * | any other live state                           | any          | as observed                               |
 *
 * A booting VM's agent presents the token of the boot it is in, and that
 * token is never the record's once the VM is imported (issued for the boot
 * of the row `fleet state rm` retired, or never issued by this record; the
 * import's history row ends it: engine/record/boot.ts, leftBoot). Recorded
 * as booting, the next apply waited in `Starting -> Running` for a boot the
 * authority denies, and failed or not by when the agent asked. Recorded as
 * the failure it will end in, the next apply leaves it along the pack's
 * recovery edges (powerOff ends the old boot, whatever its agent did
 * meanwhile) and boots it with a new token. The same table as refresh's
 * missingOutcome for a VM recorded Starting.
 *
 * A VM its cloud shows running (EC2's and Azure's `running`) is Running to
 * the drivers even when nothing says its agent completed the handshake (a
 * fleet VM got there through an approved boot: refresh). An import is where
 * that does not hold: the agent may still be booting with a token the
 * import ends, or the VM may never have been booted by this record. Without
 * evidence it is recorded as the boot's failure, and the next apply powers
 * it off and boots it with a token of its own; a VM whose boot completed
 * loses a reboot, never a record that says Running of a VM whose disk no
 * approved boot unlocked.
 */
export function importedState(lc: Lifecycle, observed: string, evidence: BootEvidence): { state: string } | { refused: true } {
  const booting = bootEntered(lc);
  const failureFrom = (state: string) => {
    const failure = lc.failure.find((f) => lc.allows(state, f));
    return failure ? { state: failure } : { refused: true as const };
  };
  if (booting.includes(observed)) return failureFrom(observed);
  if (evidence !== 'none') return { state: observed };
  const from = lc.edges.find((e) => booting.includes(e.from) && e.to === observed && !lc.failure.includes(observed));
  return from ? failureFrom(from.from) : { state: observed };
}

/** The states a `boot` edge enters (Starting). */
function bootEntered(lc: Lifecycle): string[] {
  return lc.edges.filter((e) => e.operation === 'boot').map((e) => e.to);
}

/** The states a VM is in from the moment a boot's token is issued until the boot ends: the boot edges' and those a booting state leads to, failures aside (Starting, Running). */
function bootHeld(lc: Lifecycle): string[] {
  const booting = bootEntered(lc);
  return [...new Set([...booting, ...lc.edges.filter((e) => booting.includes(e.from) && !lc.failure.includes(e.to)).map((e) => e.to)])];
}

async function runImport(io: Parameters<RegisterCommand>[1], address: string, cloudId: string, opts: ImportCliOptions, mode: ReturnType<typeof modeOf>): Promise<number> {
  const { fleet, index } = addressArg(address);
  const odd = unseenProblem(cloudId);
  if (odd || cloudId === '') fail('cli.usage', `${visible(cloudId)} is not a cloud id: it ${odd ? odd.why : 'is empty'}. Give the id its data center shows (or the VM id).`);
  const [{ defaultActor, openSession }, { staticExclusion }] = await Promise.all([import('../../apply/index.ts'), import('../../plan/index.ts')]);
  const session = await openSession(opts.stack, { cwd: io.cwd, env: loaderEnv(io, opts) });
  try {
    const { stack, pack, record } = session;
    const spec = session.fleets.find((f) => f.name === fleet);
    if (!spec) fail('apply.import-refused', `fleet ${fleet} is not in the specs of stack ${stack.name}: a VM is imported into a member of a fleet the specs declare.`, { address });
    if (spec.count === 0) {
      fail('apply.import-refused', `${address} is not a member: fleet ${fleet} has count 0, so it has no members and the next plan would delete it. Raise count first.`, { address });
    }
    if (index >= spec.count) {
      fail('apply.import-refused', `${address} is not a member: fleet ${fleet} has count ${spec.count} (members ${fleet}/0 to ${fleet}/${spec.count - 1}), so the next plan would delete it. Raise count first, or import into a free index below it (a VM the record or its cloud tags name a member of ${fleet} goes only back to that member).`, { address });
    }
    const dcs = opts.dataCenter ? stack.dataCenters.filter((d) => d.name === opts.dataCenter) : stack.dataCenters;
    if (dcs.length === 0) fail('cli.usage', `--data-center ${quote(String(opts.dataCenter))} is not a data center of stack ${stack.name} (${stack.dataCenters.map((d) => d.name).join(', ')}).`);

    // Ask each data center's DMZ client what it holds; the VM must be there and present.
    let found: ActualVm | undefined;
    const unreachable: { dc: string; diag: Diagnostic | undefined; detail: string }[] = [];
    for (const dc of dcs) {
      const provider = session.providers.get(dc.name);
      if (!provider) continue;
      let vms: ActualVm[];
      try {
        vms = await provider.listVms();
      } catch (err) {
        const first = err instanceof FleetError ? err.diagnostics[0] : undefined;
        unreachable.push({ dc: dc.name, diag: first, detail: first ? first.detail : String(err) });
        continue;
      }
      found = vms.find((v) => v.status === 'present' && (v.cloudId === cloudId || v.vmId === cloudId));
      if (found) {
        // The provider's get confirms it by its VM id, as every later call names it.
        const again = await provider.getVm(found.vmId);
        if (again?.status !== 'present') found = undefined;
        else found = again;
        if (found) break;
      }
    }
    if (!found && unreachable.length === dcs.length) {
      // Nobody could be asked: not "no such VM", but why not, under the code of what failed (apply.dmz-unreachable, ...).
      throw new FleetError(
        unreachable.map((u) => diag(u.diag?.code ?? 'apply.dmz-unreachable', `fleet import could not ask data center ${u.dc} for VM ${clip(cloudId)}: ${u.detail}`, { address })),
      );
    }
    if (!found) {
      const searched = dcs.map((d) => d.name).join(', ');
      const notAsked = unreachable.length ? `; not reachable: ${unreachable.map((u) => `${u.dc} (${u.detail})`).join('; ')}` : '';
      fail('apply.import-not-found', `no data center of stack ${stack.name} holds a VM ${clip(cloudId)} (searched ${searched}${notAsked}).`, { address });
    }
    const vm = found;
    if (!pack.lifecycle.states.includes(vm.observedState) || pack.lifecycle.isTerminal(vm.observedState)) {
      fail('apply.import-refused', `VM ${clip(cloudId)} in ${vm.dataCenter} is ${clip(vm.observedState)}, which is not a live state of the pack's lifecycle (${pack.lifecycle.states.join(', ')}).`, { address });
    }
    const catalog = pack.images[spec.image]?.[vm.dataCenter] ?? null;
    const matches = vm.image === catalog && vm.encryptedDisk === spec.encryptedDisk;
    const actor = defaultActor();
    let recorded: { state: string; evidence: BootEvidence } | undefined;
    const row: VmRow = await withFleetLock(record, stack.name, fleet, actor, async () => {
      const live = await record.findVm(stack.name, address);
      if (live) {
        fail('apply.import-refused', `${address} is live in the record already (VM ${live.id}, ${live.state}, cloud id ${live.cloudId ?? '-'}); \`fleet state rm ${address}\` forgets it first.`, { address });
      }
      // The record id is the cloud VM's: one the record tracks already (at another address, or in another stack) is not adopted twice.
      const known = await record.getVm(vm.vmId);
      if (known && known.stack !== stack.name) {
        fail('apply.import-refused', `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}) belongs to stack ${known.stack} in the record ${record.description} (${known.address}${known.retiredAt ? ', forgotten' : `, ${known.state}`}); a VM is imported into the stack it was made for.`, { address });
      }
      if (known && !known.retiredAt) {
        fail('apply.import-refused', `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}) is live in the record already, at ${known.address} (${known.state}${known.deposed ? ', deposed' : ''}); \`fleet state rm ${known.address}\` forgets it there first.`, { address });
      }
      // A VM the record never knew whose cloud tags name another fleet (it was created for that fleet, by this stack's
      // applies before the record lost it): its tags keep naming that fleet's member, which no driver call changes,
      // and the planner of that fleet would find it nowhere. It goes where its tags say.
      if (!known && vm.fleet !== undefined && vm.fleet !== fleet) {
        fail('apply.import-refused', `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}, ${clip(vm.name)}) was created as ${vm.address ?? `a member of fleet ${vm.fleet}`}: its cloud tags name fleet ${vm.fleet}, not ${fleet}, and no driver call changes them. ${taggedFleetWayBack(session.fleets, stack.name, vm)}`, { address });
      }
      // A VM of this very fleet goes back to the member it was: the one `fleet state rm` forgot it from (its record id
      // carries that member's history), else the one its cloud tags name (its cloud name and tags keep naming it, which
      // no driver call changes). At another index of the fleet the record and the cloud would name two members for it.
      const wasAt = known && known.fleet === fleet ? known.address : !known && vm.fleet === fleet ? vm.address : undefined;
      if (wasAt !== undefined && wasAt !== address) {
        const holder = await record.findVm(stack.name, wasAt);
        const then = holder ? `${wasAt} is live in the record (VM ${holder.id}, ${holder.state}): \`fleet state rm ${wasAt}\` forgets it first, then ` : '';
        const at = parseVmAddress(wasAt);
        const raise = at && at.index >= spec.count ? `fleet ${fleet} has count ${spec.count} (members ${fleet}/0 to ${fleet}/${spec.count - 1}): raise it to at least ${at.index + 1}, then ` : '';
        const way = `${raise}${then}\`fleet import ${wasAt} ${clip(vm.cloudId)}\``;
        fail(
          'apply.import-refused',
          known
            ? `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}, ${clip(vm.name)}) was ${wasAt} of fleet ${fleet}, forgotten by \`fleet state rm\`, not ${address}: its cloud name and tags still name ${wasAt}, and its record id carries that member's history. To take it back where it was: ${way}; ${address} is one the next plan creates.`
            : `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}, ${clip(vm.name)}) was created as ${wasAt}: its cloud tags name member ${wasAt}, not ${address}, and no driver call changes them. To import it where it belongs: ${way}; ${address} is one the next plan creates.`,
          { address },
        );
      }
      const evidence: BootEvidence =
        vm.agent === 'ready'
          ? 'agent-ready'
          : known && known.cloudId === vm.cloudId && bootHeld(pack.lifecycle).includes(known.state) && (await record.bootAuthorized(vm.vmId, vm.cloudId, vm.startedAt))
            ? 'authorized'
            : 'none';
      const decided = importedState(pack.lifecycle, vm.observedState, evidence);
      if ('refused' in decided) {
        fail(
          'apply.import-refused',
          bootEntered(pack.lifecycle).includes(vm.observedState)
            ? `VM ${clip(cloudId)} in ${vm.dataCenter} is ${clip(vm.observedState)}: it is booting with a boot token the record does not answer (an import ends the boot it was issued for), and the pack has no failure state one edge from ${clip(vm.observedState)} to record it in. Its agent is denied its disk key and powers it off; import it again once its data center no longer reports it ${clip(vm.observedState)}.`
            : `VM ${clip(cloudId)} in ${vm.dataCenter} is ${clip(vm.observedState)}, but nothing confirms its boot completed the handshake (${noEvidence(vm)}), and the pack has no failure state to record it in. Power it off in its data center (or restore its DMZ client's state folder), then import it again.`,
          { address },
        );
      }
      recorded = { state: decided.state, evidence };
      // Members never move (docs/planning.md): a member adopted where the fleet may not live stays there, and
      // no later plan may place or replace it there. A VM forgotten from this very member comes back as it was.
      const dc = stack.dataCenters.find((d) => d.name === vm.dataCenter);
      const excluded = dc ? staticExclusion(dc, spec, pack) : `not a data center of stack ${stack.name}`;
      if (excluded && known?.address !== address) {
        const instead =
          known && known.fleet !== fleet
            ? `It was ${known.address} of fleet ${known.fleet}, which takes it back: \`fleet import ${known.address} ${clip(vm.cloudId)}\`.`
            : `Import it into a fleet that may use ${vm.dataCenter}, or change ${fleet}'s placement or hardware first.`;
        fail('apply.import-refused', `${clip(vm.cloudId)} lives in ${vm.dataCenter}, where fleet ${fleet} may not have members (${excluded}); members never move, so no plan could replace it there. ${instead}`, { address });
      }
      // A VM of another fleet stays that fleet's: its record id carries the forgotten member's history along, and its
      // cloud name and tags (the sim's name; EC2's Name, fleet:fleet and fleet:address; Azure's fleet-address and
      // fleet-name) keep naming the member it was, which no driver call changes. It goes back where it was.
      if (known && known.fleet !== fleet) {
        fail(
          'apply.import-refused',
          `VM ${clip(vm.cloudId)} of ${vm.dataCenter} (VM ${clip(vm.vmId)}, ${clip(vm.name)}) was ${known.address} of fleet ${known.fleet}, not a VM of fleet ${fleet}: ` +
            `its cloud name and tags still name ${known.address}, and its record id carries that member's history. ` +
            `\`fleet import ${known.address} ${clip(vm.cloudId)}\` takes it back where it was; fleet ${fleet}'s member ${address} is one its next plan creates.`,
          { address },
        );
      }
      // The owner's mandatory quota holds for an adopted VM as for a created one (the data center's capacity does not:
      // the VM is there already), checked by the record in the adopt's transaction.
      const { createBudget } = await import('../../authority/policy.ts');
      const { BudgetExceededError, CloudIdTakenError, ManagerMismatchError } = await import('../../record/index.ts');
      const budget = createBudget(pack, {}, spec.owner, vm.dataCenter);
      return record.adoptVm(
        {
          id: vm.vmId,
          cloudId: vm.cloudId,
          stack: stack.name,
          fleet,
          owner: spec.owner,
          index,
          dataCenter: vm.dataCenter,
          state: decided.state,
          desiredState: spec.state,
          // An image or disk that is not the spec's: a spec hash of its own, so the next plan replaces the VM.
          specHash: matches ? spec.specHash : `imported:${clip(vm.cloudId)}`,
          image: matches ? spec.image : vm.image,
          realImage: vm.image,
          size: vm.size,
          encryptedDisk: vm.encryptedDisk,
        },
        { actor, detail: `fleet import: adopted ${clip(vm.cloudId)} (VM ${clip(vm.vmId)}) of ${vm.dataCenter}, ${clip(vm.observedState)}${decided.state === vm.observedState ? '' : `, recorded ${decided.state}: ${bootEntered(pack.lifecycle).includes(vm.observedState) ? "its boot's token is not the record's" : `nothing confirms its boot completed the handshake (${noEvidence(vm)})`}`}` },
        budget,
      ).catch((err: unknown) => {
        if (err instanceof CloudIdTakenError) {
          // The same cloud VM tracked under another VM id (checked by the record in the adopt's transaction): one cloud VM is never two members.
          const { holder } = err;
          const where = holder.stack === stack.name ? holder.address : `${holder.address} of stack ${holder.stack}`;
          return fail('apply.import-refused', `VM ${clip(vm.cloudId)} of ${vm.dataCenter} is live in the record already under another VM id, at ${where} (VM ${holder.id}); a cloud VM is one member. \`fleet state rm ${holder.address}\` forgets it there first.`, { address });
        }
        // A fleet a Pulumi program manages (fleets.managed_by, while it has live VMs): fleet files never take it over.
        if (err instanceof ManagerMismatchError) return fail('apply.import-refused', err.diagnostics[0].detail, { address });
        if (!(err instanceof BudgetExceededError)) throw err;
        return fail('apply.import-refused', `${err.diagnostics[0].detail} Importing ${clip(vm.cloudId)} as ${address} would take owner ${spec.owner} past its mandatory owner-quota; raise its limit in the stack's policyPack.config, or free a VM of that owner first.`, { address });
      });
    });
    const left: string[] = [];
    if (!matches) left.push(`its image ${vm.image}${vm.encryptedDisk === spec.encryptedDisk ? '' : ' or disk encryption'} is not the spec's (${catalog ?? `no ${spec.image} in ${vm.dataCenter}`}): the next plan replaces it`);
    if (!sameSize(vm.size, spec.size)) left.push('its size is not the spec\'s: the next plan resizes it');
    const kept = recorded!;
    if (kept.state !== vm.observedState && bootEntered(pack.lifecycle).includes(vm.observedState)) {
      left.push(
        `${vm.dataCenter} reports it ${clip(vm.observedState)}, its agent booting with a boot token of a boot the record does not answer (issued for the forgotten row's boot, or never the record's; an import ends it), ` +
          `so the authority denies it and the agent powers the VM off: recorded ${kept.state}, the next apply powers it off and boots it afresh with a new token`,
      );
    } else if (kept.state !== vm.observedState) {
      left.push(
        `${vm.dataCenter} reports it ${clip(vm.observedState)}, but nothing confirms its boot completed the handshake: ${noEvidence(vm)}. ` +
          `Its agent may still be booting with a token the import ends (the authority then denies it), or its disk was never unlocked by an approved boot: ` +
          `recorded ${kept.state}, \`fleet apply\` powers it off and boots it afresh with a new token`,
      );
    } else if (vm.observedState !== spec.state) left.push(`it is ${clip(vm.observedState)}, the spec asks for ${spec.state}`);
    const notes = left.map((l) => diag('apply.import-differs', `${address}: ${l}.`, { address }, 'warning'));
    if (mode === 'json') writeJson(io, { stack: stack.name, imported: row, diagnostics: sortDiagnostics([...session.warnings, ...notes]) });
    else {
      printDiagnostics(io, [...session.warnings, ...notes]);
      io.stdout.write(`Imported ${clip(vm.cloudId)} of ${vm.dataCenter} as ${address} (VM ${row.id}, ${row.state}). Run \`fleet plan\` to see what remains to match the spec.\n`);
    }
    return 0;
  } catch (err) {
    // The loader's warnings go with a refusal too, as with a success (they were dropped).
    if (err instanceof FleetError && session.warnings.length > 0) throw new FleetError([...err.diagnostics, ...session.warnings]);
    throw err;
  } finally {
    await session.close();
  }
}

/** Why a running VM has no BootEvidence, for a note: what its DMZ client and the record lack. */
function noEvidence(vm: ActualVm): string {
  const client =
    vm.agent === 'unknown'
      ? `${vm.dataCenter}'s DMZ client holds no report of its agent's current run (restarted without its state folder, another client booted it, or it was started again since, from the cloud's console)`
      : `${vm.dataCenter}'s DMZ client holds no ready report of its agent`;
  const since = vm.startedAt !== undefined ? ` since its latest start (${vm.startedAt})` : '';
  return `${client}, and the record has no approved boot of ${clip(vm.cloudId)}${since} as the last boot of a member it forgot`;
}

/** The import that puts a VM where its cloud tags say it belongs (fleet and member), or what to do first. */
export function taggedFleetWayBack(fleets: readonly { name: string; count: number }[], stack: string, vm: Pick<ActualVm, 'fleet' | 'address' | 'cloudId' | 'dataCenter'>): string {
  const owner = fleets.find((f) => f.name === vm.fleet);
  if (!owner) return `Fleet ${vm.fleet} is not in the specs of stack ${stack}: declare it, then \`fleet import ${vm.address ?? `${vm.fleet}/<index>`} ${clip(vm.cloudId)}\` imports it where it belongs (or delete the VM in ${vm.dataCenter}).`;
  const at = vm.address !== undefined ? parseVmAddress(vm.address) : undefined;
  if (at && at.index < owner.count) return `\`fleet import ${vm.address} ${clip(vm.cloudId)}\` imports it where it belongs.`;
  // Its member, not another of its fleet: an import at another index is refused as well (its tags name that member).
  if (at) return `Fleet ${vm.fleet} has count ${owner.count}${owner.count > 0 ? ` (members ${vm.fleet}/0 to ${vm.fleet}/${owner.count - 1})` : ''}: raise it to at least ${at.index + 1}, then \`fleet import ${vm.address} ${clip(vm.cloudId)}\` imports it where it belongs.`;
  if (owner.count === 0) return `Fleet ${vm.fleet} has count 0: raise it, then \`fleet import ${vm.fleet}/0 ${clip(vm.cloudId)}\` imports it where it belongs.`;
  return `\`fleet import ${vm.fleet}/<index> ${clip(vm.cloudId)}\` imports it into fleet ${vm.fleet} (members ${vm.fleet}/0 to ${vm.fleet}/${owner.count - 1}), where it belongs.`;
}
