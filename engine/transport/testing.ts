// Throwaway certificate authorities for tests: a CA, and server or client
// certificates it signs, made at test time (nothing is committed). Keys come
// from node:crypto (fast, native); node-forge (a devDependency) builds and
// signs the X.509 certificates, since node:crypto cannot. Only tests import
// this file.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';

export interface Pem {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** Common name; also a DNS subjectAltName unless it is an IP address. */
  cn: string;
  /** For a server certificate: names it is valid for (default localhost, 127.0.0.1, ::1). */
  altNames?: string[];
  client?: boolean;
  notBefore?: Date;
  notAfter?: Date;
}

const DAY = 86_400_000;

function keyPair(): { pem: string; pub: forge.pki.PublicKey; priv: forge.pki.PrivateKey } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return {
    pem,
    pub: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    priv: forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
  };
}

function certificate(pub: forge.pki.PublicKey, subject: string, notBefore: Date, notAfter: Date): forge.pki.Certificate {
  const c = forge.pki.createCertificate();
  c.publicKey = pub;
  c.serialNumber = `01${randomBytes(8).toString('hex')}`;
  c.validity.notBefore = notBefore;
  c.validity.notAfter = notAfter;
  c.setSubject([{ name: 'commonName', value: subject }]);
  return c;
}

export class TestCa {
  readonly cert: string;
  private readonly caCert: forge.pki.Certificate;
  private readonly caKey: forge.pki.PrivateKey;

  /** `validity`: the CA certificate's own dates (default: from a day ago for 30 days); EXPIRED or NOT_YET make a CA out of date. */
  constructor(name = 'dmzfleet test CA', validity: { notBefore?: Date; notAfter?: Date } = {}) {
    const k = keyPair();
    const c = certificate(k.pub, name, validity.notBefore ?? new Date(Date.now() - DAY), validity.notAfter ?? new Date(Date.now() + 30 * DAY));
    c.setIssuer(c.subject.attributes);
    c.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ]);
    c.sign(k.priv as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    this.caCert = c;
    this.caKey = k.priv;
    this.cert = forge.pki.certificateToPem(c);
  }

  /** A certificate this CA signs: a server's (default) or a client's. */
  issue(o: IssueOptions): Pem {
    const k = keyPair();
    const c = certificate(k.pub, o.cn, o.notBefore ?? new Date(Date.now() - DAY), o.notAfter ?? new Date(Date.now() + 7 * DAY));
    c.setIssuer(this.caCert.subject.attributes);
    const alt = (o.altNames ?? (o.client ? [] : ['localhost', '127.0.0.1', '::1'])).map((n) =>
      /^[\d.]+$|:/.test(n) ? { type: 7, ip: n } : { type: 2, value: n },
    );
    c.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: !o.client, clientAuth: !!o.client },
      ...(alt.length > 0 ? [{ name: 'subjectAltName', altNames: alt }] : []),
    ]);
    c.sign(this.caKey as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    return { cert: forge.pki.certificateToPem(c), key: k.pem };
  }
}

/** Writes PEM texts to files (mode 0600) in a fresh temp folder; returns their paths by name. */
export function writePemFiles(files: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text, { mode: 0o600 });
  }
  return paths;
}

export const EXPIRED = { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) };
export const NOT_YET = { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) };
