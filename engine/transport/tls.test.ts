import { createPrivateKey } from 'node:crypto';
import { chmodSync, copyFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXPIRED, NOT_YET, TestCa, writePemFiles } from './testing.ts';
import { checkBind, isLoopbackHost, loadClientTls, loadServerTls, serverTlsFiles, SERVER_TLS_ENV, type ServerTlsFiles } from './tls.ts';

const ca = new TestCa();
const other = new TestCa('another CA');
const server = ca.issue({ cn: 'dmz.test' });
const client = ca.issue({ cn: 'cli', client: true });
const expired = ca.issue({ cn: 'old', ...EXPIRED });
const early = ca.issue({ cn: 'soon', ...NOT_YET });
const p = writePemFiles({
  'ca.pem': ca.cert,
  'server.pem': server.cert,
  'server.key': server.key,
  'client.pem': client.cert,
  'client.key': client.key,
  'expired.pem': expired.cert,
  'expired.key': expired.key,
  'early.pem': early.cert,
  'early.key': early.key,
  'other.key': other.issue({ cn: 'x' }).key,
  'junk.pem': 'not a certificate\n',
  // The server's key under a passphrase: read as "no private key", with nothing said of why.
  'encrypted.key': createPrivateKey(server.key).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'secret-pass' }) as string,
});
const names = { cert: '--tls-cert', key: '--tls-key', clientCa: '--client-ca' };

describe('loadServerTls', () => {
  it('plain HTTP when nothing is given', () => {
    expect(loadServerTls({}, names)).toEqual({ diagnostics: [] });
  });

  it('loads a matching pair, and asks clients for certificates with a client CA', () => {
    const one = loadServerTls({ cert: p['server.pem'], key: p['server.key'] }, names);
    expect(one.diagnostics).toEqual([]);
    expect(one.tls).toMatchObject({ cert: server.cert, key: server.key, requestCert: false, rejectUnauthorized: false });
    const m = loadServerTls({ cert: p['server.pem'], key: p['server.key'], clientCa: p['ca.pem'] }, names);
    expect(m.tls).toMatchObject({ ca: ca.cert, requestCert: true, rejectUnauthorized: true });
  });

  it.each<[string, ServerTlsFiles, string, RegExp]>([
    ['cert without key', { cert: 'server.pem' }, 'tls.incomplete', /^--tls-cert is given without --tls-key: give both \(HTTPS\), or neither\.$/],
    ['key without cert', { key: 'server.key' }, 'tls.incomplete', /^--tls-key is given without --tls-cert: give both \(HTTPS\), or neither\.$/],
    ['client CA without a certificate', { clientCa: 'ca.pem' }, 'tls.incomplete', /--client-ca asks clients/],
    // It said only Node's code: `cannot read …/nope.pem (ENOENT)`.
    ['missing file', { cert: 'nope.pem', key: 'server.key' }, 'tls.file-unreadable', /^--tls-cert: cannot read \/nonexistent\/nope\.pem: no such file \(ENOENT\)\.$/],
    ['not PEM', { cert: 'junk.pem', key: 'server.key' }, 'tls.bad-pem', /holds no PEM certificate/],
    ['key not PEM', { cert: 'server.pem', key: 'junk.pem' }, 'tls.bad-pem', /holds no PEM private key/],
    ['key under a passphrase', { cert: 'server.pem', key: 'encrypted.key' }, 'tls.bad-pem', /encrypted.key holds a private key encrypted with a passphrase.*openssl pkey/],
    ['key of another certificate', { cert: 'server.pem', key: 'other.key' }, 'tls.key-mismatch', /does not belong to the certificate/],
    ['expired', { cert: 'expired.pem', key: 'expired.key' }, 'tls.certificate-expired', /expired on/],
    ['not yet valid', { cert: 'early.pem', key: 'early.key' }, 'tls.not-yet-valid', /valid only from/],
    ['client CA not PEM', { cert: 'server.pem', key: 'server.key', clientCa: 'junk.pem' }, 'tls.bad-pem', /--client-ca/],
  ])('%s', (_name, files, code, detail) => {
    const abs = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, p[v as string] ?? `/nonexistent/${v}`]));
    const got = loadServerTls(abs, names, {}, 'dmz.yaml');
    expect(got.tls).toBeUndefined();
    expect(got.diagnostics.map((d) => d.code)).toEqual([code]);
    expect(got.diagnostics[0].detail).toMatch(detail);
    expect(got.diagnostics[0].file).toBe('dmz.yaml');
  });

  it('never puts key material in a diagnostic', () => {
    const got = loadServerTls({ cert: p['server.pem'], key: p['other.key'] }, names);
    const text = JSON.stringify(got.diagnostics);
    expect(text).not.toContain('PRIVATE KEY');
    expect(text).not.toContain(server.key.split('\n')[1]);
  });
});

// A private key others may read is refused, as PostgreSQL refuses its server key: owner only, or 0640 when root owns it.
describe.skipIf(process.platform === 'win32')('a private key file readable by others', () => {
  const root = process.getuid?.() === 0;
  it.each<[string, boolean]>([
    ['0600', true],
    ['0400', true],
    ['0640', root],
    ['0660', false],
    ['0644', false],
    ['0604', false],
    ['0666', false],
  ])('mode %s: accepted %s (serving, and as a client certificate)', (octal, accepted) => {
    const mode = parseInt(octal, 8);
    const key = `${p['server.key']}.${mode.toString(8)}`;
    copyFileSync(p['server.key'], key);
    chmodSync(key, mode);
    const clientKey = `${p['client.key']}.${mode.toString(8)}`;
    copyFileSync(p['client.key'], clientKey);
    chmodSync(clientKey, mode);
    const served = loadServerTls({ cert: p['server.pem'], key }, names, {}, 'dmz.yaml');
    const asClient = loadClientTls({ ca: p['ca.pem'], cert: p['client.pem'], key: clientKey }, { ca: 'authority.caFile', cert: 'authority.certFile', key: 'authority.keyFile' });
    if (accepted) {
      expect(served.diagnostics).toEqual([]);
      expect(asClient.diagnostics).toEqual([]);
      return;
    }
    expect(served.tls).toBeUndefined();
    expect(asClient.tls).toBeUndefined();
    expect(served.diagnostics.map((d) => d.code)).toEqual(['tls.key-exposed']);
    expect(asClient.diagnostics.map((d) => d.code)).toEqual(['tls.key-exposed']);
    const m = `0${mode.toString(8)}`;
    expect(served.diagnostics[0].detail).toBe(
      `--tls-key: the private key ${key} has mode ${m}, so ${mode & 0o007 ? 'every user of this machine' : 'its group'} may read it; make it readable by its owner only (\`chmod 600 ${key}\`${root ? '; a key owned by root may be 0640' : ''}).`,
    );
    expect(served.diagnostics[0].file).toBe('dmz.yaml');
    expect(asClient.diagnostics[0].detail).toMatch(/^authority\.keyFile: the private key .* has mode/);
  });
});

// A CA bundle out of date: every certificate it should verify would be refused at the handshake, naming no file.
describe('a CA bundle none of whose certificates is in date', () => {
  const oldCa = new TestCa('old CA', EXPIRED);
  const nextCa = new TestCa('next CA', NOT_YET);
  const b = writePemFiles({ 'old-ca.pem': oldCa.cert, 'next-ca.pem': nextCa.cert, 'both.pem': oldCa.cert + nextCa.cert, 'rotating.pem': oldCa.cert + ca.cert });
  it.each<[string, string, string, RegExp]>([
    ['expired', 'old-ca.pem', 'tls.certificate-expired', /^authority\.caFile: the CA certificate in .*old-ca\.pem is out of date \(the latest expired on .*\), so every certificate it should verify is refused; give the current CA bundle$/],
    ['not valid yet', 'next-ca.pem', 'tls.not-yet-valid', /^authority\.caFile: the CA certificate in .*next-ca\.pem is valid only from /],
    ['one expired, one not yet', 'both.pem', 'tls.certificate-expired', /each of the 2 CA certificates in .*both\.pem is out of date/],
  ])('%s: refused as a caller\'s CA and as a service\'s client CA', (_name, file, code, detail) => {
    const asCaller = loadClientTls({ ca: b[file] }, { ca: 'authority.caFile', cert: 'authority.certFile', key: 'authority.keyFile' }, {}, 'stack.yaml');
    expect(asCaller.tls).toBeUndefined();
    expect(asCaller.diagnostics.map((d) => [d.code, d.file])).toEqual([[code, 'stack.yaml']]);
    expect(asCaller.diagnostics[0].detail).toMatch(detail);
    const served = loadServerTls({ cert: p['server.pem'], key: p['server.key'], clientCa: b[file] }, names);
    expect(served.tls).toBeUndefined();
    expect(served.diagnostics.map((d) => d.code)).toEqual([code]);
    expect(served.diagnostics[0].detail).toMatch(/^--client-ca: /);
  });

  it('one CA in date beside an old one (a rotation) is taken whole', () => {
    expect(loadClientTls({ ca: b['rotating.pem'] }, { ca: 'c', cert: 'x', key: 'y' }).tls).toEqual({ ca: oldCa.cert + ca.cert });
  });
});

describe('loadClientTls', () => {
  const cnames = { ca: 'auth.clientCert.ca', cert: 'auth.clientCert.cert', key: 'auth.clientCert.key' };
  it('CA only, CA and client certificate, or nothing', () => {
    expect(loadClientTls({}, cnames)).toEqual({ diagnostics: [] });
    expect(loadClientTls({ ca: p['ca.pem'] }, cnames).tls).toEqual({ ca: ca.cert });
    expect(loadClientTls({ ca: p['ca.pem'], cert: p['client.pem'], key: p['client.key'] }, cnames).tls).toEqual({ ca: ca.cert, cert: client.cert, key: client.key });
  });

  it('refuses half a pair, an expired client certificate and a bad CA', () => {
    expect(loadClientTls({ cert: p['client.pem'] }, cnames).diagnostics.map((d) => d.code)).toEqual(['tls.incomplete']);
    expect(loadClientTls({ cert: p['expired.pem'], key: p['expired.key'] }, cnames).diagnostics.map((d) => d.code)).toEqual(['tls.certificate-expired']);
    expect(loadClientTls({ ca: p['junk.pem'] }, cnames).diagnostics.map((d) => d.code)).toEqual(['tls.bad-pem']);
  });
});

describe('checkBind', () => {
  it.each([
    ['127.0.0.1', false, false, true],
    ['127.8.9.10', false, false, true],
    ['localhost', false, false, true],
    ['::1', false, false, true],
    ['[::1]', false, false, true],
    ['0.0.0.0', false, false, false],
    ['::', false, false, false],
    ['10.0.0.5', false, false, false],
    ['dmz.example', false, false, false],
    ['0.0.0.0', true, false, true],
    ['0.0.0.0', false, true, true],
  ])('%s tls=%s insecure=%s -> allowed %s', (host, tls, insecure, allowed) => {
    const d = checkBind('the authority', host, tls, insecure);
    expect(d === undefined).toBe(allowed);
    if (d) expect(d.code).toBe('tls.insecure-bind');
  });

  it('knows loopback', () => {
    expect(isLoopbackHost('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopbackHost('128.0.0.1')).toBe(false);
  });
});

describe('serverTlsFiles', () => {
  it('takes flags first, then FLEET_TLS_*', () => {
    const env = { [SERVER_TLS_ENV.cert]: '/env/cert', [SERVER_TLS_ENV.key]: '/env/key', [SERVER_TLS_ENV.clientCa]: '/env/ca' };
    expect(serverTlsFiles({ cert: '/flag/cert' }, env)).toEqual({ cert: '/flag/cert', key: '/env/key', clientCa: '/env/ca' });
    expect(serverTlsFiles({}, {})).toEqual({ cert: undefined, key: undefined, clientCa: undefined });
  });
});
