// The Azure DMZ's security properties (see ./index.ts).
import { OPEN_SOURCES, missingTags, ofType, type Admitted, type Check, type DeclaredResource } from './types.ts';

export interface AzureExpectations {
  admitted: Admitted[];
  tags: Record<string, string>;
}

const NSG = 'azure-native:network:NetworkSecurityGroup';
const RULE = 'azure-native:network:SecurityRule';
const VM = 'azure-native:compute:VirtualMachine';
const TAGGED = [
  'azure-native:resources:ResourceGroup', 'azure-native:network:VirtualNetwork', NSG, 'azure-native:managedidentity:UserAssignedIdentity',
  'azure-native:keyvault:Vault', 'azure-native:network:NetworkInterface', VM,
];
/** Roles too wide for a DMZ client whatever their scope. */
const WIDE_ROLES: Record<string, string> = {
  '8e3af657-a8ff-443c-a75c-2fe8c4bcb635': 'Owner',
  'b24988ac-6180-42a0-ab88-20f7382dd24c': 'Contributor',
  '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9': 'User Access Administrator',
};
/** A resource group, or something inside one. */
const IN_RESOURCE_GROUP = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+(\/.*)?$/i;

interface Rule {
  where: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  r: Record<string, any>;
}

function rules(rs: readonly DeclaredResource[]): { nsg: string; rules: Rule[] }[] {
  const out = ofType(rs, NSG).map((n) => ({ nsg: n.name, rules: ((n.inputs.securityRules ?? []) as Rule['r'][]).map((r) => ({ where: `NSG ${n.name} rule ${r.name}`, r })) }));
  for (const r of ofType(rs, RULE)) out.push({ nsg: String(r.inputs.networkSecurityGroupName), rules: [{ where: `security rule ${r.name}`, r: r.inputs }] });
  return out;
}

const sources = (r: Rule['r']): string[] => [...(r.sourceAddressPrefix !== undefined ? [r.sourceAddressPrefix] : []), ...(r.sourceAddressPrefixes ?? [])];
const ports = (r: Rule['r']): string[] => [...(r.destinationPortRange !== undefined ? [r.destinationPortRange] : []), ...(r.destinationPortRanges ?? [])];

export function azureChecks(e: AzureExpectations): Check[] {
  return [
    {
      property: 'ingress only from the admitted sources',
      run: (rs) => {
        const v: string[] = [];
        for (const { nsg, rules: list } of rules(rs)) {
          const inbound = list.filter((x) => x.r.direction === 'Inbound');
          for (const { where, r } of inbound.filter((x) => x.r.access === 'Allow')) {
            for (const src of sources(r)) {
              for (const port of ports(r)) {
                if (OPEN_SOURCES.has(src)) v.push(`${where} admits ${src}: anyone`);
                else if (r.protocol !== 'Tcp' || !e.admitted.some((a) => String(a.port) === port && a.cidr === src)) v.push(`${where} admits ${r.protocol} ${port} from ${src}, which is not one of the admitted flows`);
              }
            }
          }
          // Azure's own rules (priority 65000+) admit the whole VNet and the load balancer: a deny-all below the allows must override them.
          const denyAll = inbound.find((x) => x.r.access === 'Deny' && sources(x.r).includes('*') && ports(x.r).includes('*') && x.r.protocol === '*');
          const lastAllow = Math.max(0, ...inbound.filter((x) => x.r.access === 'Allow').map((x) => Number(x.r.priority)));
          if (ofType(rs, NSG).some((n) => n.name === nsg) && (!denyAll || Number(denyAll.r.priority) <= lastAllow)) v.push(`NSG ${nsg} has no deny-all inbound rule after its allow rules: Azure's defaults admit the whole VNet`);
        }
        return v;
      },
    },
    {
      property: 'no public IP',
      run: (rs) => [
        ...ofType(rs, 'azure-native:network:PublicIPAddress').map((r) => `public IP address ${r.name}`),
        ...ofType(rs, 'azure-native:network:NetworkInterface').flatMap((r) => ((r.inputs.ipConfigurations ?? []) as { name?: string; publicIPAddress?: unknown }[]).filter((c) => c.publicIPAddress !== undefined).map((c) => `NIC ${r.name} configuration ${c.name} has a public IP`)),
        ...ofType(rs, 'azure-native:network:Subnet').filter((r) => r.inputs.defaultOutboundAccess !== false).map((r) => `subnet ${r.name} keeps Azure's default outbound access (an implicit public IP)`),
      ],
    },
    {
      property: 'encrypted at rest',
      run: (rs) => [
        ...ofType(rs, VM).filter((r) => r.inputs.securityProfile?.encryptionAtHost !== true && !r.inputs.storageProfile?.osDisk?.managedDisk?.diskEncryptionSet).map((r) => `VM ${r.name} has neither encryption at host nor a disk encryption set`),
        ...ofType(rs, 'azure-native:compute:Disk').filter((r) => !r.inputs.encryption?.diskEncryptionSetId).map((r) => `disk ${r.name} has no disk encryption set`),
        ...ofType(rs, 'azure-native:keyvault:Vault').filter((r) => r.inputs.properties?.enablePurgeProtection !== true || r.inputs.properties?.publicNetworkAccess !== 'Disabled').map((r) => `key vault ${r.name} lacks purge protection or is open to public networks`),
      ],
    },
    {
      property: "identity holds only on the data center's resource group",
      run: (rs) => [
        ...ofType(rs, 'azure-native:authorization:RoleAssignment').flatMap((r) => {
          const v: string[] = [];
          if (!IN_RESOURCE_GROUP.test(String(r.inputs.scope))) v.push(`role assignment ${r.name} has scope ${r.inputs.scope}, wider than a resource group`);
          const role = String(r.inputs.roleDefinitionId).split('/').pop() ?? '';
          if (WIDE_ROLES[role]) v.push(`role assignment ${r.name} grants ${WIDE_ROLES[role]}`);
          return v;
        }),
        ...ofType(rs, VM).filter((r) => String(r.inputs.identity?.type ?? '').includes('SystemAssigned')).map((r) => `VM ${r.name} has a system-assigned identity besides its scoped one`),
      ],
    },
    {
      property: 'tagged with the stack and data center',
      run: (rs) =>
        rs
          .filter((r) => TAGGED.includes(r.type))
          .flatMap((r) => {
            const m = missingTags(r, e.tags);
            return m.length ? [`${r.type.split(':').pop()} ${r.name} lacks tags ${m.join(', ')}`] : [];
          }),
    },
  ];
}
