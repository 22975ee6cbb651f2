// The shared parts of the DMZ components: the host's fixed address, and the
// host script writing the DMZ client's config verbatim (no shell expansion).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_FILE, bootPortOf, checkNetworkCidrs, dmzClientConfig, hostAddress, hostScript, inCidr, serveCommand } from './common.ts';

describe('hostAddress', () => {
  it.each([
    ['10.20.1.0/24', 10, '10.20.1.10'],
    ['10.20.1.0/24', 4, '10.20.1.4'],
    ['10.20.1.77/24', 10, '10.20.1.10'],
    ['10.20.0.0/16', 300, '10.20.1.44'],
    ['192.168.8.0/28', 14, '192.168.8.14'],
  ])('%s + %i -> %s', (cidr, offset, want) => {
    expect(hostAddress(cidr, offset)).toBe(want);
  });

  it.each([
    ['10.20.1.0/24', 3, /keeps the first four/],
    ['10.20.1.0/24', 255, /holds 256 addresses/],
    ['192.168.8.0/28', 15, /holds 16 addresses/],
    ['10.20.1.0', 10, /not an IPv4 CIDR/],
  ])('refuses %s + %i', (cidr, offset, why) => {
    expect(() => hostAddress(cidr, offset)).toThrow(why);
  });
});

describe('hostScript', () => {
  const base = { dataCenter: 'virginia', driver: 'aws' as const, authorityUrl: 'https://authority:7400', port: 8443, stackDir: '/opt/s', fetchSecrets: 'fetch', install: [] };

  it('writes the config between quoted markers and passes it as --config', () => {
    const config = dmzClientConfig('virginia', { bootUrl: 'https://10.0.1.10:8443/v1/boot', aws: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'] } });
    const script = hostScript({ ...base, config });
    expect(script).toContain(`cat > ${CONFIG_FILE} <<'DMZFLEET_CONFIG_END'\n${config.trimEnd()}\nDMZFLEET_CONFIG_END\n`);
    expect(script).toContain(`'--config' '${CONFIG_FILE}'`);
    expect(script).toContain(`chmod 0600 /etc/dmzfleet/env /etc/dmzfleet/tls/*.pem ${CONFIG_FILE}`);
  });

  it('refuses a config holding its end marker (it would end the heredoc early)', () => {
    expect(() => hostScript({ ...base, config: 'a: 1\nDMZFLEET_CONFIG_END\nb: $(reboot)\n' })).toThrow(/DMZFLEET_CONFIG_END/);
  });
});

/**
 * An ExecStart= value split as systemd splits it (systemd.syntax(7), "Quoting"; systemd.service(5), "Command lines"):
 * words on whitespace, a double-quoted word with C escapes, `%%` for a literal % (any other % is a specifier) and `$$`
 * for a literal $ (any other $ is a variable). Throws on what it would expand.
 */
function systemdWords(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  const unescape = (w: string) => {
    if (/%[^%]|%$/.test(w.replace(/%%/g, ''))) throw new Error(`specifier in ${w}`);
    if (/\$[^$]|\$$/.test(w.replace(/\$\$/g, ''))) throw new Error(`variable in ${w}`);
    return w.replace(/%%/g, '%').replace(/\$\$/g, '$');
  };
  while (i < line.length) {
    if (line[i] === ' ') {
      i++;
      continue;
    }
    let w = '';
    if (line[i] === "'") {
      const close = line.indexOf("'", i + 1);
      if (close < 0) throw new Error('unterminated quote');
      if (/[\\%$]/.test(line.slice(i + 1, close))) throw new Error(`a backslash, % or $ in a single-quoted word at ${i}`);
      w = line.slice(i + 1, close);
      i = close + 1;
    } else if (line[i] === '"') {
      i++;
      while (line[i] !== '"') {
        if (i >= line.length) throw new Error('unterminated quote');
        if (line[i] === '\\') {
          w += line[i + 1];
          i += 2;
        } else w += line[i++];
      }
      i++;
    } else {
      while (i < line.length && line[i] !== ' ') {
        if ('"\'\\'.includes(line[i])) throw new Error(`a quote or backslash inside an unquoted word at ${i}`);
        w += line[i++];
      }
    }
    words.push(unescape(w));
  }
  return words;
}

// What the script writes as the systemd unit, run through bash, then read as systemd reads it. The unit's heredoc
// (<<UNIT, unquoted) let bash expand $(...), `...` and $VAR in it at boot, as root, and systemd then expanded % and $
// in ExecStart= and Description=. A stack's data center name may hold $, %, quotes and backslashes (stack.schema.json
// refuses only /, \ and control characters there; the component took any string), and an authority URL's path or the
// stack folder may too.
describe('hostScript: the unit as bash writes it and systemd reads it', () => {
  const base = { dataCenter: 'virginia', driver: 'aws' as const, authorityUrl: 'https://authority:7400', port: 8443, stackDir: '/opt/s', fetchSecrets: 'fetch', install: [], config: 'a: 1\n' };

  // An existing host's user data must not change for plain values: a changed script replaces the host.
  it('writes plain values as it always did (the unit byte for byte)', () => {
    const script = hostScript(base);
    expect(script).toContain("cat > /etc/systemd/system/dmzfleet-dmz-client.service <<UNIT\n[Unit]\nDescription=dmzfleet DMZ client of data center virginia\n");
    expect(script).toContain("ExecStart=/usr/bin/env 'fleet' 'serve' 'dmz-client' '--data-center' 'virginia' '--driver' 'aws' '--config' '/etc/dmzfleet/dmz-client.yaml' '--authority' 'https://authority:7400' '--host' '0.0.0.0' '--port' '8443' '--stack' '/opt/s'\n");
  });

  it.each([
    ['plain values', {}],
    ['a data center name with $(...) and a backtick', { dataCenter: 'dc$(touch CANARY)`touch CANARY`' }],
    ['a data center name with % and $VAR', { dataCenter: 'dc%h$HOME${PATH}' }],
    ['a data center name with quotes', { dataCenter: `dc"it's"` }],
    ['an authority URL with $(...) in its path', { authorityUrl: 'https://authority:7400/$(touch CANARY)/%h' }],
    ['a stack folder with spaces, quotes and a backslash', { stackDir: `/opt/my stack/it's "here"\\x` }],
  ])('%s: ExecStart= is the serve command, word for word, and nothing is expanded', (_what, over) => {
    const dir = mkdtempSync(join(tmpdir(), 'dmzfleet-unit-'));
    try {
      const o = Object.fromEntries(Object.entries({ ...base, ...over }).map(([k, v]) => [k, typeof v === 'string' ? v.replaceAll('CANARY', join(dir, 'expanded')) : v])) as typeof base;
      const lines = hostScript(o).split('\n');
      const start = lines.findIndex((l) => l.startsWith('cat > /etc/systemd/system/dmzfleet-dmz-client.service'));
      const end = lines.indexOf('UNIT', start + 1);
      expect(start).toBeGreaterThan(0);
      const unitFile = join(dir, 'unit');
      const snippet = [lines[start].replace('/etc/systemd/system/dmzfleet-dmz-client.service', unitFile), ...lines.slice(start + 1, end + 1)].join('\n');
      execFileSync('bash', ['-euc', snippet], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } });
      expect(existsSync(join(dir, 'expanded'))).toBe(false);
      const unit = readFileSync(unitFile, 'utf8').split('\n');
      const exec = unit.find((l) => l.startsWith('ExecStart='))!;
      expect(systemdWords(exec.slice('ExecStart='.length))).toEqual(['/usr/bin/env', ...serveCommand(o)]);
      const description = unit.find((l) => l.startsWith('Description='))!;
      expect(description.slice('Description='.length).replace(/%%/g, '%')).toBe(`dmzfleet DMZ client of data center ${o.dataCenter}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['a data center name with a line break (a unit directive of its own)', { dataCenter: 'dc\nExecStartPre=/bin/sh -c evil' }, /dataCenter/],
    ['a stack folder with a line break', { stackDir: '/opt/s\nx' }, /stackDir/],
    ['an authority URL with a carriage return', { authorityUrl: 'https://a:7400/\r' }, /authorityUrl/],
  ])('refuses %s, naming it', (_what, over, why) => {
    expect(() => hostScript({ ...base, ...over })).toThrow(why);
  });
});

describe('bootPortOf', () => {
  it('is the API port (the DMZ client serves /v1/boot there), and refuses another', () => {
    expect(bootPortOf('n', 8443, undefined)).toBe(8443);
    expect(bootPortOf('n', 8443, 8443)).toBe(8443);
    expect(() => bootPortOf('DmzNetwork virginia', 8443, 7401)).toThrow(/DmzNetwork virginia: bootPort 7401 is not apiPort 8443/);
  });
});

describe('inCidr', () => {
  it.each([
    ['10.20.1.10', '10.20.1.0/24', true],
    ['10.20.2.10', '10.20.1.0/24', false],
    ['10.20.1.300', '10.20.1.0/24', false],
    ['10.20.1', '10.20.1.0/24', false],
    ['10.20.200.1', '10.20.0.0/16', true],
  ])('%s in %s: %s', (address, cidr, want) => {
    expect(inCidr(address, cidr)).toBe(want);
  });
});

// Found by QA: only the tenant CIDRs were checked. A subnet outside the VPC or VNet, two subnets that overlap, or a
// CIDR that is no network (a typo, 10.20.1.7/24) went into the subnets and the rules naming them, and the cloud
// refused it only during `pulumi up`, after the VPC or VNet and its security groups were made.
describe('checkNetworkCidrs', () => {
  const check = (space: string, dmz: string, fleet: string) => () =>
    checkNetworkCidrs('DmzNetwork v', { name: 'vpcCidr', cidr: space }, [
      { name: 'dmzSubnetCidr', cidr: dmz },
      { name: 'fleetSubnetCidr', cidr: fleet },
    ]);
  it('takes two subnets of their own inside the address space', () => {
    expect(check('10.20.0.0/16', '10.20.1.0/24', '10.20.2.0/24')).not.toThrow();
    expect(check('10.20.0.0/16', '10.20.0.0/17', '10.20.128.0/17')).not.toThrow();
  });
  it.each([
    ['a subnet outside the space', ['10.20.0.0/16', '10.20.1.0/24', '10.30.2.0/24'], /fleetSubnetCidr 10\.30\.2\.0\/24 is not inside vpcCidr 10\.20\.0\.0\/16/],
    ['a subnet wider than the space', ['10.20.0.0/16', '10.20.1.0/24', '10.0.0.0/8'], /fleetSubnetCidr 10\.0\.0\.0\/8 is not inside vpcCidr/],
    ['overlapping subnets', ['10.20.0.0/16', '10.20.0.0/23', '10.20.1.0/24'], /dmzSubnetCidr 10\.20\.0\.0\/23 and fleetSubnetCidr 10\.20\.1\.0\/24 overlap/],
    ['the same subnet twice', ['10.20.0.0/16', '10.20.1.0/24', '10.20.1.0/24'], /overlap/],
    ['a host address for a network', ['10.20.0.0/16', '10.20.1.7/24', '10.20.2.0/24'], /dmzSubnetCidr 10\.20\.1\.7\/24 is not an IPv4 network CIDR/],
    ['no CIDR at all', ['10.20.0.0/16', '10.20.1.0/24', 'fleet'], /fleetSubnetCidr fleet is not an IPv4 network CIDR/],
    ['an octet over 255', ['10.20.0.0/16', '10.20.256.0/24', '10.20.2.0/24'], /dmzSubnetCidr 10\.20\.256\.0\/24 is not/],
  ])('refuses %s, naming the input', (_what, [space, dmz, fleet], why) => {
    expect(check(space, dmz, fleet)).toThrow(why);
  });
});
