// TLS for every hop that leaves loopback (DESIGN.md, "Transport"): the
// authority and the DMZ clients serve HTTPS when given a certificate and key,
// may require client certificates (mTLS), and callers verify the server
// against a CA bundle and may present a client certificate.
//
// This module only loads and checks TLS material and decides whether a
// service may listen where it was asked to; the services and the HTTP sender
// (providers/http-send.ts) pass what it returns to node:https unchanged.
// Every problem is a located diagnostic, found before a port is opened or a
// request is sent: a wrong key or an expired certificate fails start-up, not
// the first handshake an hour later.
//
// What must stay true:
// - A private key is read, checked against its certificate and handed to
//   node:https; it is never logged, never put in a diagnostic, never written.
// - Plain HTTP is refused off loopback unless the caller says --insecure.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { type Diagnostic, clip, clipPath, diag, fsReason, quote } from '../diags/index.ts';

/** Paths of a server's TLS material, as flags, environment variables or a config file give them. */
export interface ServerTlsFiles {
  /** PEM certificate chain the service presents. */
  cert?: string;
  /** PEM private key of that certificate. */
  key?: string;
  /** PEM CA bundle: when given, every client must present a certificate it signed (mTLS). */
  clientCa?: string;
}

/** Paths of a caller's TLS material: the CA that signed the server, and optionally its own client certificate. */
export interface ClientTlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/** What node:https.createServer (and Fastify's `https` option) takes. */
export interface ServerTls {
  cert: string;
  key: string;
  ca?: string;
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

/** What node:https.request takes besides the URL: plain strings, so it stays serializable. */
export interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
}

/** Where a setting came from, for diagnostics: `--tls-cert`, `FLEET_TLS_KEY`, `stacks/x/stack.yaml: dataCenters[0].auth.clientCert.ca`. */
export type SettingNames<T> = { [K in keyof T]-?: string };

export interface LoadOptions {
  now?: number;
  read?: (path: string) => string;
}

export interface Loaded<T> {
  /** Undefined when nothing was configured or when diagnostics has errors. */
  tls?: T;
  diagnostics: Diagnostic[];
}

const readUtf8 = (path: string) => readFileSync(path, 'utf8');

/** How much of a certificate's subject a diagnostic shows (it is the file's, and may be long or hold anything). */
const SUBJECT_LIMIT = 200;

/** Reads one file; pushes tls.file-unreadable on failure. */
function readSetting(setting: string, path: string, read: (p: string) => string, out: Diagnostic[], where: string | undefined): string | undefined {
  try {
    return read(path);
  } catch (err) {
    out.push(diag('tls.file-unreadable', `${setting}: cannot read ${clipPath(path)}: ${fsReason(err)}.`, where ? { file: where } : {}));
    return undefined;
  }
}

/** Every certificate of a PEM bundle; pushes tls.bad-pem when there is none or one does not parse. */
function parseCerts(setting: string, path: string, pem: string, out: Diagnostic[], where: string | undefined): X509Certificate[] | undefined {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    out.push(diag('tls.bad-pem', `${setting}: ${clipPath(path)} holds no PEM certificate`, where ? { file: where } : {}));
    return undefined;
  }
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    out.push(diag('tls.bad-pem', `${setting}: ${clipPath(path)} holds a certificate that does not parse (${(err as Error).message})`, where ? { file: where } : {}));
    return undefined;
  }
}

/** Pushes tls.certificate-expired / tls.not-yet-valid for the leaf of a chain. */
function checkValidity(setting: string, path: string, cert: X509Certificate, now: number, out: Diagnostic[], where: string | undefined): void {
  const loc = where ? { file: where } : {};
  if (Date.parse(cert.validTo) <= now) {
    out.push(diag('tls.certificate-expired', `${setting}: the certificate in ${clipPath(path)} (${clip(cert.subject.replace(/\n/g, ', '), SUBJECT_LIMIT)}) expired on ${cert.validTo}`, loc));
  } else if (Date.parse(cert.validFrom) > now) {
    out.push(diag('tls.not-yet-valid', `${setting}: the certificate in ${clipPath(path)} is valid only from ${cert.validFrom}`, loc));
  }
}

/**
 * Pushes tls.key-exposed for a private key file others may read: as
 * PostgreSQL does with its server key, one owned by this user must be 0600 or
 * less, one owned by root 0640 or less (a group such as ssl-cert); anything
 * more lets other users of the machine read the key (a Kubernetes secret
 * mounted with its default mode, 0644, included: give it defaultMode 0400).
 * Not on Windows, whose files have no such mode.
 */
function checkKeyMode(setting: string, path: string, out: Diagnostic[], where: string | undefined): void {
  if (process.platform === 'win32') return;
  let st;
  try {
    st = statSync(path);
  } catch {
    return; // It was just read: a file gone since is the next reader's to report.
  }
  const open = st.uid === 0 ? st.mode & 0o037 : st.mode & 0o077;
  if (open === 0) return;
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  const who = st.mode & 0o007 ? 'every user of this machine' : 'its group';
  out.push(
    diag(
      'tls.key-exposed',
      `${setting}: the private key ${clipPath(path)} has mode ${mode}, so ${who} may read it; make it readable by its owner only (\`chmod 600 ${clipPath(path)}\`${st.uid === 0 ? '; a key owned by root may be 0640' : ''}).`,
      where ? { file: where } : {},
    ),
  );
}

/**
 * Reads and parses a CA bundle; pushes tls.certificate-expired / tls.not-yet-valid when none of its certificates
 * is in date (every peer it verifies would be refused, with an error naming no file). A bundle holding an old CA
 * beside its successor (a rotation) is fine.
 */
function loadBundle(setting: string, path: string, o: Required<LoadOptions>, out: Diagnostic[], where: string | undefined): string | undefined {
  const pem = readSetting(setting, path, o.read, out, where);
  if (pem === undefined) return undefined;
  const certs = parseCerts(setting, path, pem, out, where);
  if (!certs) return undefined;
  const inDate = certs.filter((c) => Date.parse(c.validFrom) <= o.now && o.now < Date.parse(c.validTo));
  if (inDate.length > 0) return pem;
  const loc = where ? { file: where } : {};
  const one = certs.length === 1 ? 'the CA certificate' : `each of the ${certs.length} CA certificates`;
  if (certs.some((c) => Date.parse(c.validTo) <= o.now)) {
    const last = certs.reduce((a, b) => (Date.parse(b.validTo) > Date.parse(a.validTo) ? b : a));
    out.push(diag('tls.certificate-expired', `${setting}: ${one} in ${clipPath(path)} is out of date (the latest expired on ${last.validTo}), so every certificate it should verify is refused; give the current CA bundle`, loc));
  } else {
    const first = certs.reduce((a, b) => (Date.parse(b.validFrom) < Date.parse(a.validFrom) ? b : a));
    out.push(diag('tls.not-yet-valid', `${setting}: ${one} in ${clipPath(path)} is valid only from ${first.validFrom} (check this machine's clock)`, loc));
  }
  return undefined;
}

/** A certificate and its key: both read, parsed, matched and in date. */
function loadPair(
  names: { cert: string; key: string },
  certPath: string,
  keyPath: string,
  o: Required<LoadOptions>,
  out: Diagnostic[],
  where: string | undefined,
): { cert: string; key: string } | undefined {
  const certPem = readSetting(names.cert, certPath, o.read, out, where);
  const keyPem = readSetting(names.key, keyPath, o.read, out, where);
  if (certPem === undefined || keyPem === undefined) return undefined;
  if (o.read === readUtf8) checkKeyMode(names.key, keyPath, out, where);
  const chain = parseCerts(names.cert, certPath, certPem, out, where);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    // The parser's message may quote the input: never let key material reach a diagnostic (only its code is read).
    const encrypted = (err as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE' || /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyPem);
    const why = encrypted
      ? `holds a private key encrypted with a passphrase, which a service cannot ask for: give it the key unencrypted (\`openssl pkey -in KEY -out PLAIN\`, the file kept 0600)`
      : 'holds no PEM private key that this build can read';
    out.push(diag('tls.bad-pem', `${names.key}: ${clipPath(keyPath)} ${why}`, where ? { file: where } : {}));
  }
  if (!chain || !key) return undefined;
  if (!chain[0].checkPrivateKey(key)) {
    out.push(diag('tls.key-mismatch', `${names.key}: the key in ${clipPath(keyPath)} does not belong to the certificate in ${clipPath(certPath)}`, where ? { file: where } : {}));
    return undefined;
  }
  const before = out.length;
  checkValidity(names.cert, certPath, chain[0], o.now, out, where);
  return out.length === before ? { cert: certPem, key: keyPem } : undefined;
}

function options(o: LoadOptions): Required<LoadOptions> {
  return { now: o.now ?? Date.now(), read: o.read ?? readUtf8 };
}

/**
 * A service's TLS settings from its files: undefined `tls` and no diagnostics
 * when neither certificate nor key is given (plain HTTP, see checkBind).
 * `where` is the config file the paths came from, if any.
 */
export function loadServerTls(files: ServerTlsFiles, names: SettingNames<ServerTlsFiles>, opts: LoadOptions = {}, where?: string): Loaded<ServerTls> {
  const o = options(opts);
  const out: Diagnostic[] = [];
  if (!files.cert && !files.key) {
    if (files.clientCa) out.push(diag('tls.incomplete', `${names.clientCa} asks clients for certificates, but no ${names.cert} and ${names.key} were given to serve TLS`, where ? { file: where } : {}));
    return { diagnostics: out };
  }
  if (!files.cert || !files.key) {
    out.push(diag('tls.incomplete', files.cert ? `${names.cert} is given without ${names.key}: give both (HTTPS), or neither.` : `${names.key} is given without ${names.cert}: give both (HTTPS), or neither.`, where ? { file: where } : {}));
    return { diagnostics: out };
  }
  const pair = loadPair(names, files.cert, files.key, o, out, where);
  let ca: string | undefined;
  if (files.clientCa) ca = loadBundle(names.clientCa, files.clientCa, o, out, where);
  if (!pair || out.length > 0) return { diagnostics: out };
  const tls: ServerTls = { ...pair, requestCert: ca !== undefined, rejectUnauthorized: ca !== undefined };
  if (ca !== undefined) tls.ca = ca;
  return { tls, diagnostics: out };
}

/**
 * A caller's TLS settings: the CA bundle to verify the server with (the
 * system's when absent) and its own client certificate for mTLS.
 */
export function loadClientTls(files: ClientTlsFiles, names: SettingNames<ClientTlsFiles>, opts: LoadOptions = {}, where?: string): Loaded<ClientTls> {
  const o = options(opts);
  const out: Diagnostic[] = [];
  const tls: ClientTls = {};
  if (files.ca) {
    const ca = loadBundle(names.ca, files.ca, o, out, where);
    if (ca !== undefined) tls.ca = ca;
  }
  if (files.cert || files.key) {
    if (!files.cert || !files.key) {
      out.push(diag('tls.incomplete', files.cert ? `${names.cert} is given without ${names.key}: give both (HTTPS), or neither.` : `${names.key} is given without ${names.cert}: give both (HTTPS), or neither.`, where ? { file: where } : {}));
    } else {
      const pair = loadPair(names, files.cert, files.key, o, out, where);
      if (pair) Object.assign(tls, pair);
    }
  }
  if (out.length > 0) return { diagnostics: out };
  return Object.keys(tls).length > 0 ? { tls, diagnostics: out } : { diagnostics: out };
}

/** `localhost`, 127.0.0.0/8 and ::1 (with or without brackets): addresses no other machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./i.test(h);
  return false;
}

/**
 * Whether `url` is plain HTTP to another machine: a bearer token (or a disk
 * key coming back) sent there would cross the network in clear text
 * (tls.plain-remote). Plain HTTP is for loopback (DESIGN.md, "Transport").
 */
export function isPlainRemote(url: URL): boolean {
  return url.protocol === 'http:' && !isLoopbackHost(url.hostname);
}

/**
 * Whether a service may listen on `host`: over TLS anywhere, in plain HTTP
 * only on loopback, or anywhere when the operator said --insecure (behind a
 * TLS-terminating proxy). Returns the diagnostic that refuses it, if any.
 */
export function checkBind(service: string, host: string, hasTls: boolean, insecure: boolean): Diagnostic | undefined {
  if (hasTls || insecure || isLoopbackHost(host)) return undefined;
  return diag('tls.insecure-bind', `${service} was asked to listen on ${quote(host)} in plain HTTP; give --tls-cert and --tls-key, or --insecure behind a TLS proxy`);
}

/** The environment variables a service reads its TLS files from when no flag is given. */
export const SERVER_TLS_ENV: SettingNames<ServerTlsFiles> = {
  cert: 'FLEET_TLS_CERT',
  key: 'FLEET_TLS_KEY',
  clientCa: 'FLEET_TLS_CLIENT_CA',
};

/** A service's TLS files from flags first, then the environment. */
export function serverTlsFiles(flags: ServerTlsFiles, env: NodeJS.ProcessEnv = process.env): ServerTlsFiles {
  return {
    cert: flags.cert ?? env[SERVER_TLS_ENV.cert],
    key: flags.key ?? env[SERVER_TLS_ENV.key],
    clientCa: flags.clientCa ?? env[SERVER_TLS_ENV.clientCa],
  };
}
