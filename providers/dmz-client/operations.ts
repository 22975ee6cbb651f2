// Carrying an approved edge out in the cloud: the edge's operation (the
// closed set in engine/model) is one driver call, made with a deadline and
// tried again while its failure is transient. What the call returns that the
// record needs goes into the edge's report.
//
// | operation    | driver call                                 | from the approval            | into the report |
// | ------------ | ------------------------------------------- | ---------------------------- | --------------- |
// | `none`       | none (only the record changes)              |                              |                 |
// | `createVm`   | createVm(name, image, size, disk key hash)  | the VM, realImage, diskKeyHash | cloudId       |
// | `powerOn`    | powerOn                                     |                              |                 |
// | `boot`       | boot with the one-time boot token           | bootToken                    |                 |
// | `awaitReady` | awaitReady, up to readyTimeoutMs            |                              |                 |
// | `shutdown`   | shutdown                                    |                              |                 |
// | `powerOff`   | powerOff                                    |                              |                 |
// | `resize`     | resize to the request's size                |                              | size            |
// | `deleteVm`   | deleteVm                                    |                              |                 |
//
// The table below is typed over every operation, so an operation added to
// engine/model does not compile until it is carried out here too. An
// operation the authority names that is not in the set (a newer authority)
// fails the step like a driver error: it is reported, not thrown.
import { WireError, type AuthorizeResponse, type AuthorityVm } from '../../protocol/index.ts';
import { isOperation, type DriverCall, type Operation, type VmSize } from '../../engine/model/index.ts';
import { DriverError, type Driver, type ScopedCredentials, type VmRef } from '../drivers/types.ts';

export interface DriverCallOptions {
  /** Tries of a call that fails with a transient error. */
  attempts: number;
  /** A call not answering within this fails (DriverError 'timeout', not transient). */
  timeoutMs: number;
  /** Base of the random pause before a try again, in ms: up to backoffMs x 2^try. Default 20. */
  backoffMs?: number;
  /**
   * The longest Retry-After the client waits out (DriverError.retryAfterMs); a
   * cloud asking for longer gets the failure back instead of a shorter wait. Default 120 000.
   */
  maxRetryAfterMs?: number;
  /** The pause between tries (tests record it). Default: a timer. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * When the credentials the call is made with expire (ms since the epoch: credentialsExpireAt). A try again
   * starts only while they have more than credentialsMarginMs left; else the call stops with 503
   * credentials-expiring. Absent (or NaN: none that can be read, which the driver refuses itself): not checked.
   */
  credentialsExpireAt?: number;
  /** What a try needs of its credentials' life. Default CREDENTIALS_MARGIN_MS. */
  credentialsMarginMs?: number;
  /**
   * The tries made so far by earlier sends of the step (answered 503 credentials-expiring), counted on by this
   * call: a step sent again goes on with the tries left, `attempts` in all, as if it had not been stopped.
   */
  tries?: { made: number };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Default longest Retry-After waited out before a try again. */
export const MAX_RETRY_AFTER_MS = 120_000;

/**
 * Credentials closer than this to their expiry are not used for a cloud call: a call with its waits (a create until
 * the instance runs, a power-off until it stops) takes a minute or two, and a try is given 120 s (the per-call
 * deadline). A fresh approval always has more: the authority's credentials last 10 minutes, and its brokers renew a
 * cloud session at two thirds of its life (an AWS session of 900 s is handed out with at least 300 s left, an Entra
 * token with at least 20 minutes). Checked before the first try (step.ts: an approval given earlier is asked for
 * again) and before every try again (callDriver).
 */
export const CREDENTIALS_MARGIN_MS = 120_000;

/**
 * When `creds` expire, in ms since the epoch: the earliest of the expiries the drivers check (the scoped
 * credentials', and the brokered AWS session's or Azure token's, which the authority's is never later than).
 * NaN when none can be read: the driver refuses such credentials itself (driver.credentials).
 */
export function credentialsExpireAt(creds: ScopedCredentials): number {
  const all = [creds.expiresAt, creds.aws?.expiration, creds.azure?.expiresOn].filter((t): t is string => t !== undefined).map((t) => Date.parse(t));
  return all.some((t) => Number.isNaN(t)) ? NaN : Math.min(...all);
}

/**
 * One driver call with a deadline, tried again while its failure is
 * transient: after a random backoff, or at least the Retry-After the cloud
 * asked for (never sooner: a throttled cloud throttles a client that comes
 * back early for longer).
 *
 * A try again starts only while the call's credentials have more than the
 * margin left (credentialsExpireAt): tries and waits may add up to several
 * minutes, and a try on credentials expired meanwhile is refused
 * (driver.credentials), failing the step for nothing but the wait. Past that,
 * the call stops with 503 credentials-expiring instead: nothing is reported,
 * and the step, sent again with its key, is authorized afresh (fresh
 * credentials) and tried again. A Retry-After is still waited out first,
 * even one that outlasts the credentials: the step sent again would come
 * back to the cloud sooner than it asked. The first try runs with the
 * credentials as the step hands them (checked there: step.ts). Sent again,
 * the step goes on with the tries it has left (`tries`): a cloud that keeps
 * failing still fails the step after `attempts` tries in all.
 */
export async function callDriver<T>(what: DriverCall, fn: () => Promise<T>, o: DriverCallOptions): Promise<T> {
  const backoffMs = o.backoffMs ?? 20;
  const pause = o.sleep ?? sleep;
  const marginMs = o.credentialsMarginMs ?? CREDENTIALS_MARGIN_MS;
  /** The failure of the try before, and the pause after it (for the message of a call stopped). */
  let before: { err: DriverError; waitedMs: number } | undefined;
  for (let attempt = (o.tries?.made ?? 0) + 1; ; attempt++) {
    const expireAt = o.credentialsExpireAt;
    if (before && expireAt !== undefined && Number.isFinite(expireAt) && expireAt - Date.now() <= marginMs) {
      throw expiring(what, attempt - 1, expireAt, marginMs, before);
    }
    if (o.tries) o.tries.made = attempt;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DriverError('timeout', `${what} did not answer within ${o.timeoutMs} ms`, false)), o.timeoutMs);
    });
    try {
      return await Promise.race([fn(), deadline]);
    } catch (err) {
      if (err instanceof DriverError && err.transient && attempt < o.attempts) {
        const asked = err.retryAfterMs ?? 0;
        if (asked > (o.maxRetryAfterMs ?? MAX_RETRY_AFTER_MS)) throw err;
        const waitMs = Math.max(asked, Math.random() * backoffMs * 2 ** attempt);
        await pause(waitMs);
        before = { err, waitedMs: waitMs };
        continue;
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A call stopped before a try again: its credentials would not outlast the try (callDriver). */
function expiring(what: DriverCall, tries: number, expiresAt: number, marginMs: number, before: { err: DriverError; waitedMs: number }): WireError {
  const left = expiresAt - Date.now();
  const when = `${left > 0 ? 'expire' : 'expired'} at ${new Date(expiresAt).toISOString()} (${left > 0 ? `in ${Math.floor(left / 1000)} s` : `${Math.ceil(-left / 1000)} s ago`})`;
  const waited = before.waitedMs >= 1000 ? `, then waited ${Math.round(before.waitedMs / 1000)} s${before.err.retryAfterMs !== undefined ? ' as the cloud asked (Retry-After)' : ''}` : '';
  return new WireError(
    'credentials-expiring',
    `${what} was not tried again: the credentials of its approval ${when}, within the ${Math.round(marginMs / 1000)} s a try needs; its try ${tries} failed (${before.err.message})${waited}. Nothing of this step was recorded; sent again with its idempotency key, it is authorized afresh, with fresh credentials`,
  );
}

/** What a carried-out operation gives the edge's report. */
export interface OperationDone {
  cloudId?: string;
  size?: VmSize;
}

/** The operations that call the driver. */
export type CloudOperation = Exclude<Operation, 'none'>;

/** Everything one operation's call may need. */
interface EdgeCall {
  driver: Driver;
  creds: ScopedCredentials;
  ref: VmRef;
  vm: AuthorityVm;
  auth: AuthorizeResponse;
  size: VmSize | undefined;
  readyTimeoutMs: number;
  /** The call, with its deadline and tries (callDriver). */
  retry: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** One entry per operation: the compiler refuses a missing one. */
const CALLS: { readonly [O in CloudOperation]: (c: EdgeCall) => Promise<OperationDone> } = {
  createVm: async ({ driver, creds, ref, vm, auth, retry }) => {
    const made = await retry(() =>
      driver.createVm(creds, {
        vmId: ref.vmId,
        address: vm.address,
        name: vm.name,
        image: auth.realImage ?? vm.realImage ?? '',
        size: vm.size,
        encryptedDisk: vm.encryptedDisk,
        ...(auth.diskKeyHash !== undefined ? { diskKeyHash: auth.diskKeyHash } : {}),
      }),
    );
    return { cloudId: made.cloudId };
  },
  powerOn: async ({ driver, creds, ref, retry }) => {
    await retry(() => driver.powerOn(creds, ref));
    return {};
  },
  boot: async ({ driver, creds, ref, auth, retry }) => {
    const bootToken = auth.bootToken;
    if (bootToken === undefined) throw new DriverError('failed', 'the authority issued no boot token');
    await retry(() => driver.boot(creds, ref, { bootToken }));
    return {};
  },
  awaitReady: async ({ driver, creds, ref, readyTimeoutMs, retry }) => {
    await retry(() => driver.awaitReady(creds, ref, { timeoutMs: readyTimeoutMs }));
    return {};
  },
  shutdown: async ({ driver, creds, ref, retry }) => {
    await retry(() => driver.shutdown(creds, ref));
    return {};
  },
  powerOff: async ({ driver, creds, ref, retry }) => {
    await retry(() => driver.powerOff(creds, ref));
    return {};
  },
  resize: async ({ driver, creds, ref, size, retry }) => {
    if (!size) throw new DriverError('failed', 'a resize needs the new size');
    await retry(() => driver.resize(creds, ref, size));
    return { size };
  },
  deleteVm: async ({ driver, creds, ref, retry }) => {
    await retry(() => driver.deleteVm(creds, ref));
    return {};
  },
};

/** The operations carried out here, in table order (tests compare them with engine/model). */
export const CARRIED_OUT: readonly CloudOperation[] = Object.keys(CALLS) as CloudOperation[];

function isCloudOperation(s: string): s is CloudOperation {
  return s !== 'none' && isOperation(s);
}

export interface OperationsOptions extends DriverCallOptions {
  /** How long awaitReady waits for a VM to boot. */
  readyTimeoutMs: number;
}

/** A data center's driver, as the steps of its DMZ client call it. */
export class Operations {
  constructor(
    readonly driver: Driver,
    private readonly o: OperationsOptions,
  ) {}

  /**
   * Carries out `operation`, approved by `auth`, on VM `vmId` (`size`: a
   * resize's new size). Throws DriverError when the cloud call failed (after
   * its tries), or when the operation is none the driver knows; WireError
   * credentials-expiring when a try again would outlast the approval's
   * credentials (callDriver). `tries`: see DriverCallOptions.
   */
  async carryOut(operation: string, auth: AuthorizeResponse, vmId: string, size: VmSize | undefined, tries?: { made: number }): Promise<OperationDone> {
    if (operation === 'none') return {};
    const creds = auth.credentials;
    const vm = auth.vm;
    if (!creds || !vm) throw new Error(`bug: an approval of ${operation} without credentials or VM`);
    if (!isCloudOperation(operation)) throw new DriverError('failed', `the ${this.driver.kind} driver has no operation ${operation}`);
    const o = { ...this.o, credentialsExpireAt: credentialsExpireAt(creds), ...(tries ? { tries } : {}) };
    return CALLS[operation]({
      driver: this.driver,
      creds,
      ref: { vmId, cloudId: vm.cloudId },
      vm,
      auth,
      size,
      readyTimeoutMs: this.o.readyTimeoutMs,
      // awaitReady is a wait of up to readyTimeoutMs (10 min for aws and azure)
      // that the driver bounds itself; the per-call deadline (120 s) would cut
      // it short, so its backstop is the wait plus one call.
      retry: (fn) => callDriver(operation, fn, operation === 'awaitReady' ? { ...o, timeoutMs: this.o.readyTimeoutMs + this.o.timeoutMs } : o),
    });
  }
}
