// What the AWS SDK for JavaScript needs from the process before its first
// client (EC2 for the aws driver, STS for the authority's broker) is made.

/** The AWS SDK's documented opt-out of its Node version warning (`@aws-sdk/core`, emitWarningIfUnsupportedVersion). */
export const AWS_SDK_NODE_WARNING_ENV = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';

/**
 * Keeps the AWS SDK from printing its NodeVersionSupportWarning, unless the
 * environment already says otherwise. On Node 20, which fleet supports
 * (package.json engines, README), the first client the SDK makes printed 9
 * lines at every `fleet serve dmz-client --driver aws` and authority start:
 * SDK versions published after January 2027 will need Node 22. fleet pins
 * its SDK version, so nobody running it can act on that; the maintainers can
 * (if you raise the SDK past that, raise engines too). The SDK reads the
 * variable at each client's construction until it has warned once; only
 * `"true"` silences it, so a value someone set (any other) keeps the warning.
 * Other warnings are untouched: nothing filters process warnings.
 */
export function quietAwsSdkNodeWarning(env: NodeJS.ProcessEnv = process.env): void {
  env[AWS_SDK_NODE_WARNING_ENV] ??= 'true';
}
