// Bearer tokens per role (DESIGN.md, "Transport"; docs/security.md): which
// environment variable holds which party's token. One place, so the CLI,
// the services, the Pulumi providers and the docs name the same variables.
//
// | role                    | held by            | presented to           | variable                                          |
// | ----------------------- | ------------------ | ---------------------- | ------------------------------------------------- |
// | CLI -> DMZ client       | the CLI / CI job   | the data center's DMZ  | `auth.tokenEnv` of the data center in stack.yaml, |
// |                         |                    | client (which also     | else FLEET_CLI_TOKEN_<DC>                         |
// |                         |                    | reads it, to check it) |                                                   |
// | DMZ client -> authority | the DMZ client     | the authority (which   | FLEET_DMZ_TOKEN_<DC>                              |
// |                         |                    | also reads it)         |                                                   |
// | CLI -> authority        | the CLI / CI job   | the authority (which   | `authority.tokenEnv` in stack.yaml, else          |
// | (plan seals)            |                    | also reads it)         | FLEET_AUTHORITY_TOKEN                             |
//
// <DC> is the data center's name upper-cased, every other character `_`
// (`us-east` -> `US_EAST`). A token is read from the environment when it is
// used and never written to a plan, a log, a diagnostic or the record.

/** `us-east` -> `US_EAST`: a data center's name as a variable-name suffix. */
export function envSuffix(dataCenter: string): string {
  return dataCenter.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** The variable the CLI's token to a data center's DMZ client is read from when stack.yaml names none. */
export function defaultCliTokenEnv(dataCenter: string): string {
  return `FLEET_CLI_TOKEN_${envSuffix(dataCenter)}`;
}

/** The variable holding the CLI's token to a data center's DMZ client: its `auth.tokenEnv`, else FLEET_CLI_TOKEN_<DC>. */
export function cliTokenEnv(dc: { name: string; auth?: { tokenEnv?: string } }): string {
  return dc.auth?.tokenEnv ?? defaultCliTokenEnv(dc.name);
}

/**
 * Where a bearer token holds a character an HTTP header cannot carry, as
 * `U+000D at position 4`, or undefined when it can be sent. Node refuses
 * such a header (ERR_INVALID_CHAR) before anything is sent, which the DMZ
 * client's retries took for an unreachable data center for a minute: a
 * token read from a file saved with Windows line ends (`abc\r`), or pasted
 * with a line break. The token itself is never quoted.
 */
export function unsendableTokenChar(token: string): string | undefined {
  // The characters Node's http accepts in a header value (lib/_http_common.js, checkInvalidHeaderChar).
  const m = /[^\t\x20-\x7e\x80-\xff]/.exec(token);
  if (!m) return undefined;
  return `U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at position ${m.index + 1}`;
}

/** apply.token-invalid's detail: `variable`, the CLI's token for `whom` (`the DMZ client of data center miami`), holds `bad` (unsendableTokenChar). */
export function tokenInvalidDetail(variable: string, whom: string, bad: string): string {
  return `${variable}, the bearer token for ${whom}, holds ${bad}, a character an HTTP header cannot carry (a line end read with the token from a file?): set it to the token alone. No request was sent with it.`;
}

/** The variable holding a data center's DMZ client's token at the authority (both services read it). */
export function dmzTokenEnv(dataCenter: string): string {
  return `FLEET_DMZ_TOKEN_${envSuffix(dataCenter)}`;
}

/** The variable holding the CLI's token at a deployed stack's authority (plan seals) when stack.yaml names none; the authority reads the same. */
export const AUTHORITY_CLI_TOKEN_ENV = 'FLEET_AUTHORITY_TOKEN';

/**
 * Query parameters of a URL that hold a secret: node-postgres (as libpq)
 * takes a record's password from `?password=` as well as from the userinfo,
 * and its client key's passphrase from `?sslpassword=`.
 */
const SECRET_PARAMS = ['password', 'sslpassword'];

/**
 * A URL with its secrets (the userinfo's password, `password` and
 * `sslpassword` parameters) replaced by `***`, safe for messages and logs.
 * Also for a string that does not parse as a URL (a malformed record URL is
 * quoted in its diagnostic).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const p of SECRET_PARAMS) if (u.searchParams.has(p)) u.searchParams.set(p, '***');
    // A scheme without an authority (mysql:, postgres: with a bad port) parses with the userinfo in the path: redact that too.
    return u.toString().replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
  } catch {
    return url
      .replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
      .replace(new RegExp(`([?&](?:${SECRET_PARAMS.join('|')})=)[^&#]*`, 'gi'), '$1***');
  }
}
