// Why a boot this DMZ client carried out was denied, kept for the step that
// awaits that boot (awaitReady): its failed step's message (what `fleet apply`
// prints for the member, its journal row, the VM's history) names the cause.
// The boot endpoint is open and answers every denial with one fixed reason;
// the authority tells this client (authenticated) the cause beside it
// (BootAuthorizeResponse.detail). Which denial is the booting VM's, by the
// token it presented and what it claimed:
//
// | the denied boot request for a VM this client is booting   | kept as    | the failed step adds                          |
// | --------------------------------------------------------- | ---------- | --------------------------------------------- |
// | the token of this client's latest boot of it              | `cause`    | the authority's reason: …                     |
// | the token of an earlier boot of it by this client, since  | `cause`    | the authority's reason (for the boot token of |
// | replaced (the boot edge approved again; the VM may still  | (not over  | an earlier boot of it, replaced since): …     |
// | boot with it), no cause of a later token kept             | a later's) |                                               |
// | another token, claiming the VM's cloud id and image as    | `other`    | it did not present the boot token it was      |
// | this client booted it (only without a cause above)        |            | booted with: a boot for it with another token |
// |                                                           |            | was denied; the authority's reason: …         |
// | another token claiming another cloud id or image; a VM    | nothing    |                                               |
// | this client is not booting                                |            |                                               |
//
// A caller guessing at the VM's id cannot put its words in the step: the
// authority's reason for a token that is not the VM's quotes the cloud id and
// image the caller claimed, which are kept only when they are the VM's own,
// and a cause of one of the VM's tokens wins over it. Kept from the boot until
// the step awaiting it is done, across restarts: a DMZ client restarted
// between a boot and its awaitReady (the CLI sends the run again from that
// step), or between the VM's denial and the awaitReady, still names it.
//
// Why here and not asked of the authority at the failed step: the authority's
// boot attempts do not record which token was presented, so it cannot tell the
// VM's denial from a guesser's; this client knows the tokens it booted with.
//
// File: <stateDir>/boot-causes.json, `{ "version": 1, "vms": { vmId: entry } }`,
// written whole (temp file 0600 + rename, the folder 0700) at most every
// SAVE_DELAY_MS after a change, and at the DMZ client's close (flush): every
// boot changes it twice, and a synchronous write of the whole file at each
// change was on every boot's path. A crash loses the changes of the last
// SAVE_DELAY_MS: the wording of the failed steps of those boots, nothing else.
// It holds no secret: a token's sha256, never the token; the causes name the
// VM's address, state, cloud id and image, as its history does. It only words
// failed steps: a file that cannot be read is started over (the causes of the
// boots in flight are lost, nothing else).
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeOwnFile } from '../../engine/durability/own-file.ts';
import { sha256 } from '../../protocol/index.ts';

/** Most VMs whose boot a DMZ client keeps (a boot whose awaitReady never came stays until then): the oldest go first. */
export const BOOTS_KEPT = 10_000;
/** Most tokens kept per VM: its latest boot's and the ones that boot edge replaced. */
const TOKENS_KEPT = 4;

export interface BootEntry {
  /** sha256 of each token this client booted the VM with since its last awaitReady, oldest first. */
  tokens: string[];
  /** The VM's cloud id and image as this client booted it: what the VM claims at the boot endpoint. */
  cloudId: string | null;
  image: string | null;
  /** The authority's cause of the last denial of one of `tokens`, and that token's hash. */
  cause?: { detail: string; token: string };
  /** The authority's cause of the last denial of another token claiming `cloudId` and `image`. */
  other?: string;
}

/** A boot request the endpoint denied, as the caller sent it. */
export interface DeniedBoot {
  vmId: string;
  cloudId: string;
  image: string;
  bootToken: string;
}

/** The most a change waits before it is written (see the header). */
export const SAVE_DELAY_MS = 200;

export function bootCausesFile(stateDir: string): string {
  return join(stateDir, 'boot-causes.json');
}

export class BootCauses {
  private readonly vms = new Map<string, BootEntry>();

  private constructor(private readonly file: string | undefined) {}

  /** The causes kept in `stateDir` (created on first write); in memory only without one. */
  static open(stateDir: string | undefined): BootCauses {
    if (stateDir === undefined) return new BootCauses(undefined);
    const causes = new BootCauses(bootCausesFile(stateDir));
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(causes.file!, 'utf8'));
    } catch {
      // None yet, or unreadable: started over (see the header).
      return causes;
    }
    const vms = (doc as { version?: unknown; vms?: unknown } | null)?.vms;
    if ((doc as { version?: unknown }).version !== 1 || typeof vms !== 'object' || vms === null) return causes;
    for (const [vmId, e] of Object.entries(vms as Record<string, BootEntry>)) {
      if (typeof e === 'object' && e !== null && Array.isArray(e.tokens)) causes.vms.set(vmId, e);
    }
    return causes;
  }

  /** This client is about to boot `vmId` with `bootToken` (its cloud id and image as the record holds them). */
  booting(vmId: string, bootToken: string, cloudId: string | null, image: string | null): void {
    const hash = sha256(bootToken);
    const was = this.vms.get(vmId);
    // The denials of other tokens before this boot are not this boot's; those of the earlier tokens may be (the VM
    // may still boot with one of them).
    const tokens = [...(was?.tokens ?? []).filter((t) => t !== hash), hash].slice(-TOKENS_KEPT);
    const cause = was?.cause && tokens.includes(was.cause.token) ? { cause: was.cause } : {};
    this.vms.delete(vmId);
    this.vms.set(vmId, { tokens, cloudId, image, ...cause });
    for (const oldest of this.vms.keys()) {
      if (this.vms.size <= BOOTS_KEPT) break;
      this.vms.delete(oldest);
    }
    this.save();
  }

  /** The boot endpoint denied `b`; `detail` is the authority's cause. Kept when it is the booting VM's (see the header). */
  denied(b: DeniedBoot, detail: string): void {
    const e = this.vms.get(b.vmId);
    if (!e) return;
    const hash = sha256(b.bootToken);
    if (e.tokens.includes(hash)) {
      // An earlier token's denial does not hide a later token's.
      if (e.cause && e.tokens.indexOf(hash) < e.tokens.indexOf(e.cause.token)) return;
      e.cause = { detail, token: hash };
    } else if (e.cloudId !== null && b.cloudId === e.cloudId && b.image === e.image) {
      e.other = detail;
    } else {
      return;
    }
    this.save();
  }

  /** What the failed step of `vmId`'s boot, denied, adds to its message: the cause kept, or '' when none is. */
  why(vmId: string): string {
    const e = this.vms.get(vmId);
    if (e?.cause) {
      const earlier = e.cause.token !== e.tokens.at(-1) ? ' (for the boot token of an earlier boot of it, replaced since)' : '';
      return `; the authority's reason${earlier}: ${e.cause.detail}`;
    }
    if (e?.other !== undefined) return `; it did not present the boot token it was booted with: a boot for it with another token was denied; the authority's reason: ${e.other}`;
    return '';
  }

  /** The wait for `vmId`'s boot is over, ready or not: its causes are nobody's business any more. */
  done(vmId: string): void {
    if (this.vms.delete(vmId)) this.save();
  }

  private timer: NodeJS.Timeout | undefined;

  /** Writes the changes at most SAVE_DELAY_MS from now (see the header); nothing to write without a file. */
  private save(): void {
    if (!this.file || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.write();
    }, SAVE_DELAY_MS);
    // A change not yet written never keeps the process alive: close() flushes it.
    this.timer.unref();
  }

  /** Writes the changes not yet written now (the DMZ client's close). */
  flush(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.write();
  }

  private write(): void {
    const file = this.file!;
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      // Never through a symbolic link at the temp name (predictable: the pid); the rename replaces a link at the name.
      writeOwnFile(tmp, `${JSON.stringify({ version: 1, vms: Object.fromEntries(this.vms) })}\n`);
      renameSync(tmp, file);
    } catch {
      // Written from a timer, where a throw would end the process: the causes only word failed steps (see the
      // header), and the next change writes the whole file again.
    }
  }
}
