import { defineCodes } from './types.ts';

// Diagnostic codes of engine/transport: TLS material and where services may listen.
export const tlsCodes = defineCodes({
  'tls.file-unreadable': {
    summary: 'Cannot read a TLS file',
    doc: 'A certificate, key or CA bundle named by a flag, an environment variable (FLEET_TLS_*) or a stack\'s `auth.clientCert` could not be read. The detail names the setting, the path and the cause; check the path and that the process may read it.',
    severity: 'error',
  },
  'tls.bad-pem': {
    summary: 'Not a PEM certificate or key',
    doc: 'A TLS file does not hold what its setting expects: a PEM certificate (`-----BEGIN CERTIFICATE-----`), a CA bundle of them, or a PEM private key, not encrypted (a service has nobody to ask for a passphrase). The detail names the setting and the path.',
    severity: 'error',
  },
  'tls.key-mismatch': {
    summary: 'Key does not match certificate',
    doc: 'The private key given with a certificate is not the key the certificate was issued for. Give the key that belongs to the certificate (or the certificate that belongs to the key).',
    severity: 'error',
  },
  'tls.key-exposed': {
    summary: 'Private key readable by others',
    doc: 'A TLS private key file (--tls-key, --authority-key, a stack\'s `auth.clientCert.keyFile` or `authority.keyFile`) may be read by other users of the machine: its group or everyone has read or write access. Anyone who reads it can pose as the service or the caller. Make it readable by its owner only (`chmod 600 FILE`; a key owned by root may be 0640, for a group such as ssl-cert; a Kubernetes secret: `defaultMode: 0400`). The detail names the setting, the file and its mode.',
    severity: 'error',
  },
  'tls.certificate-expired': {
    summary: 'Certificate expired',
    doc: 'A certificate given to serve or to present as a client certificate is past its notAfter date, so every peer would refuse it; or every certificate of a CA bundle (--client-ca, --authority-ca, --boot-ca, a stack\'s caFile) is, so every certificate it should verify would be refused. Renew it (or give the current CA bundle); the detail names the file and the date.',
    severity: 'error',
  },
  'tls.not-yet-valid': {
    summary: 'Certificate not yet valid',
    doc: 'A certificate\'s notBefore date is in the future (or this machine\'s clock is behind), or that of every certificate of a CA bundle. Peers refuse it until then; check the clock, or issue it with an earlier start.',
    severity: 'error',
  },
  'tls.incomplete': {
    summary: 'Incomplete TLS settings',
    doc: 'A certificate was given without its key, or a key without its certificate, or a client CA without a server certificate (clients can be asked for certificates only over TLS). Give both halves.',
    severity: 'error',
  },
  'tls.plain-address': {
    summary: 'TLS settings for a plain HTTP address',
    doc: 'A data center in stack.yaml has `auth.clientCert` but its address is not `https://`, or `fleet serve dmz-client` was given --authority-ca, --authority-cert or --authority-key with an `http://` --authority: the CA and certificate would never be used, and the bearer token would cross the network in clear text. Give the `https://` address (a service serves TLS with --tls-cert and --tls-key, and requires client certificates with --client-ca).',
    severity: 'error',
  },
  'tls.plain-remote': {
    summary: 'Plain HTTP address off loopback',
    doc: 'A data center\'s address or the authority\'s address in stack.yaml, or the --authority of `fleet serve dmz-client`, or the boot URL the VMs of its aws or azure data center are told (its config\'s spec.bootUrl, else the address it listens on), is `http://` on a host other than loopback (localhost, 127.0.0.0/8, ::1). The caller sends its bearer token (the data center\'s, the CLI\'s at the authority, or the DMZ client\'s FLEET_DMZ_TOKEN_<DC>; a booting VM its boot token) with every request, so the token, and the plans, VM data and disk keys, would cross the network in clear text. Give the service\'s `https://` address (it serves TLS with --tls-cert and --tls-key; a TLS-terminating proxy in front of it has an https:// address too). Plain HTTP is for services on this machine only.',
    severity: 'error',
  },
  'tls.insecure-bind': {
    summary: 'Plain HTTP off loopback',
    doc: 'A service was asked to listen on an address other than loopback without TLS, so bearer tokens and disk keys would cross the network in clear text. Give --tls-cert and --tls-key (or FLEET_TLS_CERT and FLEET_TLS_KEY), or, only behind a TLS-terminating proxy you trust, pass --insecure.',
    severity: 'error',
  },
});
