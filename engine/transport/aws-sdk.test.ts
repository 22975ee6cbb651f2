import { describe, expect, it } from 'vitest';
import { AWS_SDK_NODE_WARNING_ENV, quietAwsSdkNodeWarning } from './aws-sdk.ts';

describe('quietAwsSdkNodeWarning', () => {
  it.each([
    { what: 'unset: silenced', before: undefined, after: 'true' },
    { what: 'set to true: kept', before: 'true', after: 'true' },
    { what: 'set to false by someone who wants the warning: kept', before: 'false', after: 'false' },
    { what: 'set empty: kept (the SDK then warns)', before: '', after: '' },
  ])('$what', ({ before, after }) => {
    const env: NodeJS.ProcessEnv = before === undefined ? {} : { [AWS_SDK_NODE_WARNING_ENV]: before };
    quietAwsSdkNodeWarning(env);
    expect(env[AWS_SDK_NODE_WARNING_ENV]).toBe(after);
  });

  it("is the variable the SDK's own check reads", async () => {
    const { readFile } = await import('node:fs/promises');
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const source = await readFile(require.resolve('@aws-sdk/core/client'), 'utf8');
    expect(source).toContain(`process.env.${AWS_SDK_NODE_WARNING_ENV} === "true"`);
  });
});
