// The Azure DMZ's security properties (see ./index.ts).
import { BROKER_ROLE, BUILT_IN_ROLES, DMZ_CLIENT_READER_ROLE, FLEET_SUBNET_JOIN_ROLE, SUBNET_JOIN_ACTION } from '../azure/roles.ts';
import { inCidr } from '../common.ts';
import { OPEN_SOURCES, missingTags, ofType, type Admitted, type Check, type DeclaredResource } from './types.ts';

export interface AzureExpectations {
  admitted: Admitted[];
  tags: Record<string, string>;
  /** Object id of the broker principal's service principal: the only principal that may change anything. */
  brokerPrincipalId: string;
  /** Address prefix of the fleet subnet: the only subnet the broker may join a NIC to. */
  fleetSubnetPrefix: string;
}

const NSG = 'azure-native:network:NetworkSecurityGroup';
const RULE = 'azure-native:network:SecurityRule';
const VM = 'azure-native:compute:VirtualMachine';
const TAGGED = [
  'azure-native:resources:ResourceGroup', 'azure-native:network:VirtualNetwork', NSG, 'azure-native:managedidentity:UserAssignedIdentity',
  'azure-native:keyvault:Vault', 'azure-native:network:NetworkInterface', VM,
];
const ASSIGNMENT = 'azure-native:authorization:RoleAssignment';
const DEFINITION = 'azure-native:authorization:RoleDefinition';
/** Roles too wide for anyone in a DMZ whatever their scope. */
const WIDE_ROLES: Record<string, string> = {
  [BUILT_IN_ROLES.owner]: 'Owner',
  [BUILT_IN_ROLES.contributor]: 'Contributor',
  [BUILT_IN_ROLES.userAccessAdministrator]: 'User Access Administrator',
};
/** Built-in roles by id, for the violations' text. */
const BUILT_IN_NAMES: Record<string, string> = {
  ...WIDE_ROLES,
  [BUILT_IN_ROLES.virtualMachineContributor]: 'Virtual Machine Contributor',
  [BUILT_IN_ROLES.networkContributor]: 'Network Contributor',
  [BUILT_IN_ROLES.keyVaultSecretsUser]: 'Key Vault Secrets User',
};
/** A resource group, or something inside one. */
const IN_RESOURCE_GROUP = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+(\/.*)?$/i;
/** One key vault (…/providers/Microsoft.KeyVault/vaults/<name>; the mocks say keyvault/Vault), not the resource group holding it. */
const A_VAULT = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/[^/]+\/vaults?\/[^/]+$/i;
/** A whole resource group, nothing narrower. */
const A_RESOURCE_GROUP = /^\/subscriptions\/[^/]+\/resourceGroups\/([^/]+)$/i;
/** One subnet (…/virtualNetworks/<vnet>/subnets/<name>; the mocks say network/Subnet/<name>), not its VNet or resource group. */
const A_SUBNET = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/[^/]+\/(virtualNetworks\/[^/]+\/subnets|Subnet)\/[^/]+$/i;
/** The resource group a scope is, or is inside of; undefined for a subscription or wider. */
const groupOf = (scope: unknown) => /^\/subscriptions\/[^/]+\/resourceGroups\/([^/]+)/i.exec(String(scope))?.[1]?.toLowerCase();
const JOIN = SUBNET_JOIN_ACTION.toLowerCase();
/** Every action docs/drivers/azure.md grants, in any of the custom roles. */
const DOCUMENTED_ACTIONS = new Set([...BROKER_ROLE.actions, ...FLEET_SUBNET_JOIN_ROLE.actions, ...DMZ_CLIENT_READER_ROLE.actions].map((a) => a.toLowerCase()));

/** A declared custom role: its id's last segment, name, actions. */
interface DeclaredRole {
  r: DeclaredResource;
  actions: string[];
  dataActions: string[];
}

function customRoles(rs: readonly DeclaredResource[]): Map<string, DeclaredRole> {
  const out = new Map<string, DeclaredRole>();
  for (const r of ofType(rs, DEFINITION)) {
    const perms = (r.inputs.permissions ?? []) as { actions?: string[]; dataActions?: string[] }[];
    const role = { r, actions: perms.flatMap((p) => p.actions ?? []), dataActions: perms.flatMap((p) => p.dataActions ?? []) };
    // An assignment names the role by its id (the input roleDefinitionId); one Pulumi named for it, by the resource's name (the mocks' id).
    if (r.inputs.roleDefinitionId) out.set(String(r.inputs.roleDefinitionId).toLowerCase(), role);
    out.set(r.name.toLowerCase(), role);
  }
  return out;
}

const lastSegment = (id: unknown) => (String(id).split('/').pop() ?? '').toLowerCase();

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

/** Service tags a DMZ may go out to, and on which port: the cloud's API (through the NAT gateway) and the identity's tokens. */
const EGRESS_TAGS: Record<string, string> = { azureresourcemanager: '443', azureplatformimds: '80' };
/** A private (RFC 1918) IPv4 prefix: the VNet's own, or the tenant's networks over VPN or ExpressRoute. */
const isPrivatePrefix = (p: string) => /^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(p) && ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'].some((c) => inCidr(p.split('/')[0], c) && Number(p.split('/')[1] ?? 32) >= Number(c.split('/')[1]));
const destinations = (r: Rule['r']): string[] => [...(r.destinationAddressPrefix !== undefined ? [r.destinationAddressPrefix] : []), ...(r.destinationAddressPrefixes ?? [])];
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
      // The NSGs' defaults let a subnet out to the whole VNet and, through a NAT gateway, the Internet: an exfiltration path.
      property: 'egress only to Resource Manager, the metadata service and private networks',
      run: (rs) => {
        const v: string[] = [];
        for (const { nsg, rules: list } of rules(rs)) {
          const outbound = list.filter((x) => x.r.direction === 'Outbound');
          const allows = outbound.filter((x) => x.r.access === 'Allow');
          for (const { where, r } of allows) {
            for (const dst of destinations(r)) {
              const tag = EGRESS_TAGS[dst.toLowerCase()];
              if (tag !== undefined) {
                if (r.protocol !== 'Tcp' || ports(r).some((p) => p !== tag)) v.push(`${where} lets ${r.protocol} ${ports(r).join(',')} out to ${dst}, which is reached on TCP ${tag} only`);
              } else if (OPEN_SOURCES.has(dst)) v.push(`${where} lets anything out to ${dst}`);
              else if (!isPrivatePrefix(dst)) v.push(`${where} lets traffic out to ${dst}, neither a private network nor ${Object.keys(EGRESS_TAGS).join(' or ')}`);
            }
          }
          const denyAll = outbound.find((x) => x.r.access === 'Deny' && destinations(x.r).includes('*') && ports(x.r).includes('*') && x.r.protocol === '*');
          const lastAllow = Math.max(0, ...allows.map((x) => Number(x.r.priority)));
          if (ofType(rs, NSG).some((n) => n.name === nsg) && (!denyAll || Number(denyAll.r.priority) <= lastAllow)) v.push(`NSG ${nsg} has no deny-all outbound rule after its allow rules: Azure's defaults let the subnet out to the VNet and the Internet`);
        }
        return v;
      },
    },
    {
      // Its public network access is off: the host reaches it only through a private endpoint whose name the VNet resolves.
      property: 'the key vault is reached privately',
      run: (rs) => {
        const v: string[] = [];
        const endpoints = ofType(rs, 'azure-native:network:PrivateEndpoint');
        const zones = ofType(rs, 'azure-native:privatedns:PrivateZone').filter((z) => z.inputs.privateZoneName === 'privatelink.vaultcore.azure.net');
        const zoneNames = new Set(zones.flatMap((z) => [z.name, String(z.inputs.privateZoneName)]));
        const linked = ofType(rs, 'azure-native:privatedns:VirtualNetworkLink').some((l) => zoneNames.has(String(l.inputs.privateZoneName)) && l.inputs.virtualNetwork?.id);
        const groups = ofType(rs, 'azure-native:network:PrivateDnsZoneGroup');
        for (const vault of ofType(rs, 'azure-native:keyvault:Vault')) {
          const ep = endpoints.find((e) =>
            ((e.inputs.privateLinkServiceConnections ?? []) as { privateLinkServiceId?: string; groupIds?: string[] }[]).some((c) => lastSegment(c.privateLinkServiceId) === vault.name.toLowerCase() && (c.groupIds ?? []).includes('vault')),
          );
          if (!ep) {
            v.push(`key vault ${vault.name} has no private endpoint (group vault): with public network access off, nothing can read it`);
            continue;
          }
          if (zones.length === 0) v.push(`no private DNS zone privatelink.vaultcore.azure.net: the vault's name resolves to its public address, which refuses the host`);
          else if (!linked) v.push(`the privatelink.vaultcore.azure.net zone is linked to no VNet: the host does not resolve the private endpoint`);
          const group = groups.find((g) => String(g.inputs.privateEndpointName) === ep.name);
          if (!group || !((group.inputs.privateDnsZoneConfigs ?? []) as { privateDnsZoneId?: string }[]).some((c) => zones.some((z) => lastSegment(c.privateDnsZoneId) === z.name.toLowerCase()))) {
            v.push(`private endpoint ${ep.name} writes no record in the privatelink.vaultcore.azure.net zone (no private DNS zone group)`);
          }
        }
        return v;
      },
    },
    {
      property: 'no public IP',
      run: (rs) => [
        // A NAT gateway's address only takes the DMZ subnet out (to Resource Manager: the egress property); no VM may hold one.
        ...ofType(rs, 'azure-native:network:PublicIPAddress')
          .filter((r) => !ofType(rs, 'azure-native:network:NatGateway').some((n) => ((n.inputs.publicIpAddresses ?? []) as { id?: string }[]).some((a) => lastSegment(a.id) === r.name.toLowerCase())))
          .map((r) => `public IP address ${r.name}, not a NAT gateway's`),
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
      property: "roles hold only on the data center's resource groups",
      run: (rs) => [
        ...ofType(rs, ASSIGNMENT).flatMap((r) => {
          const v: string[] = [];
          if (!IN_RESOURCE_GROUP.test(String(r.inputs.scope))) v.push(`role assignment ${r.name} has scope ${r.inputs.scope}, wider than a resource group`);
          const role = lastSegment(r.inputs.roleDefinitionId);
          if (WIDE_ROLES[role]) v.push(`role assignment ${r.name} grants ${WIDE_ROLES[role]}`);
          return v;
        }),
        ...ofType(rs, DEFINITION).flatMap((r) => {
          const scopes = [r.inputs.scope, ...((r.inputs.assignableScopes ?? []) as unknown[])];
          const wide = scopes.filter((s) => !IN_RESOURCE_GROUP.test(String(s)));
          const v = wide.map((s) => `custom role ${r.name} is defined or assignable at ${s}, wider than a resource group`);
          if (!r.inputs.assignableScopes?.length) v.push(`custom role ${r.name} names no assignable scope`);
          return v;
        }),
        ...ofType(rs, VM).filter((r) => String(r.inputs.identity?.type ?? '').includes('SystemAssigned')).map((r) => `VM ${r.name} has a system-assigned identity besides its scoped one`),
      ],
    },
    {
      // docs/drivers/azure.md, "Credentials": the DMZ client's own identity reads; every change needs a token the authority gets for the broker.
      property: 'only the broker principal may change anything',
      run: (rs) => {
        const roles = customRoles(rs);
        const reader = new Set(DMZ_CLIENT_READER_ROLE.actions.map((a) => a.toLowerCase()));
        const broker = new Set([...BROKER_ROLE.actions, ...FLEET_SUBNET_JOIN_ROLE.actions].map((a) => a.toLowerCase()));
        const v: string[] = [];
        const assignments = ofType(rs, ASSIGNMENT);
        for (const r of assignments) {
          const id = lastSegment(r.inputs.roleDefinitionId);
          const isBroker = String(r.inputs.principalId) === e.brokerPrincipalId;
          const who = isBroker ? 'the broker principal' : `principal ${r.inputs.principalId}`;
          const custom = roles.get(id);
          if (custom) {
            const allowed = isBroker ? broker : reader;
            const beyond = custom.actions.filter((a) => !allowed.has(a.toLowerCase()));
            if (beyond.length) v.push(`role assignment ${r.name} gives ${who} custom role ${custom.r.name}, whose actions ${beyond.join(', ')} go beyond the ${isBroker ? `${BROKER_ROLE.name} and ${FLEET_SUBNET_JOIN_ROLE.name} roles` : `${DMZ_CLIENT_READER_ROLE.name} role`}`);
            if (custom.dataActions.length) v.push(`role assignment ${r.name} gives ${who} data actions ${custom.dataActions.join(', ')}`);
          } else if (!isBroker && id === BUILT_IN_ROLES.keyVaultSecretsUser) {
            if (!A_VAULT.test(String(r.inputs.scope))) v.push(`role assignment ${r.name} gives ${who} Key Vault Secrets User at ${r.inputs.scope}, not on one vault`);
          } else {
            v.push(`role assignment ${r.name} gives ${who} ${BUILT_IN_NAMES[id] ?? `role ${id}`}, ${isBroker ? `not the ${BROKER_ROLE.name} role` : 'which may change resources (only reads are allowed it)'}`);
          }
        }
        const brokerHolds = assignments.filter((r) => String(r.inputs.principalId) === e.brokerPrincipalId && roles.has(lastSegment(r.inputs.roleDefinitionId)));
        if (brokerHolds.length === 0) v.push(`the broker principal ${e.brokerPrincipalId} holds no ${BROKER_ROLE.name} role: no change the authority approves could be made`);
        return v;
      },
    },
    {
      // docs/drivers/azure.md, "Least-privilege role definitions": a broker token writes VMs, NICs and disks only in the
      // fleet's resource group, which holds nothing of the DMZ, and joins NICs to the fleet subnet alone. On the DMZ's
      // group it could rewrite or delete the DMZ host; joining the DMZ subnet (or any subnet of the VNet) it could put a
      // VM beside the DMZ client, past the fleet subnet's NSG.
      property: "the broker writes only the fleet's resource group and joins only the fleet subnet",
      run: (rs) => {
        const roles = customRoles(rs);
        const v: string[] = [];
        // Resource groups holding what the program declares: the DMZ's network, host, identity, vault.
        const dmz = new Map<string, string[]>();
        for (const r of rs) {
          const g = r.inputs.resourceGroupName === undefined ? undefined : String(r.inputs.resourceGroupName).toLowerCase();
          if (g) dmz.set(g, [...(dmz.get(g) ?? []), `${r.type.split(':').pop()} ${r.name}`]);
        }
        const holding = (g: string) => `resource group ${g}, which holds the DMZ's ${dmz.get(g)!.slice(0, 4).join(', ')}${dmz.get(g)!.length > 4 ? ', ...' : ''}`;
        const fleetSubnets = ofType(rs, 'azure-native:network:Subnet').filter((s) => s.inputs.addressPrefix === e.fleetSubnetPrefix);
        if (fleetSubnets.length === 0) v.push(`no subnet has the fleet subnet's prefix ${e.fleetSubnetPrefix}`);
        const isFleetSubnet = (scope: unknown) => A_SUBNET.test(String(scope)) && fleetSubnets.some((s) => lastSegment(scope) === s.name.toLowerCase());
        const writes = (actions: string[]) => actions.filter((a) => a.toLowerCase() !== JOIN);
        let joins = 0;
        for (const r of ofType(rs, ASSIGNMENT).filter((x) => String(x.inputs.principalId) === e.brokerPrincipalId)) {
          const role = roles.get(lastSegment(r.inputs.roleDefinitionId));
          if (!role) continue; // a built-in role: 'only the broker principal may change anything' names it
          const scope = String(r.inputs.scope);
          const joinsSubnets = role.actions.some((a) => a.toLowerCase() === JOIN);
          if (writes(role.actions).length === 0) {
            if (isFleetSubnet(scope)) joins += 1;
            else v.push(`role assignment ${r.name} lets the broker join NICs to subnets at ${scope}: only on the fleet subnet (${e.fleetSubnetPrefix}) itself, never the DMZ subnet, the VNet or a resource group`);
            continue;
          }
          if (joinsSubnets) v.push(`role assignment ${r.name} gives the broker ${role.r.name}, which writes and also joins subnets: ${SUBNET_JOIN_ACTION} belongs in a role of its own on the fleet subnet alone`);
          const group = groupOf(scope);
          if (group === undefined) v.push(`role assignment ${r.name} lets the broker write at ${scope}, above every resource group, the DMZ's included`);
          else if (dmz.has(group)) v.push(`role assignment ${r.name} lets the broker write ${A_RESOURCE_GROUP.test(scope) ? 'in' : `at ${scope}, inside`} ${holding(group)}: a broker token could change or delete the DMZ itself`);
        }
        if (fleetSubnets.length > 0 && joins === 0) v.push(`the broker may join no NIC to the fleet subnet ${e.fleetSubnetPrefix}: no VM it is approved to create could be made`);
        // Defining a writing role on the DMZ's group does not grant it, but makes it one assignment away from the DMZ host.
        for (const { r, actions } of new Set(roles.values())) {
          const w = writes(actions).filter((a) => !a.toLowerCase().endsWith('/read'));
          if (w.length === 0) continue;
          for (const s of [r.inputs.scope, ...((r.inputs.assignableScopes ?? []) as unknown[])]) {
            const g = groupOf(s);
            if (g && dmz.has(g)) v.push(`custom role ${r.name}, which writes (${w[0]}${w.length > 1 ? ', ...' : ''}), is defined or assignable in ${holding(g)}`);
          }
        }
        return v;
      },
    },
    {
      property: 'custom roles grant only the documented actions',
      run: (rs) =>
        [...new Set(customRoles(rs).values())].flatMap(({ r, actions, dataActions }) => {
          const v: string[] = [];
          const notActions = ((r.inputs.permissions ?? []) as { notActions?: string[] }[]).flatMap((p) => p.notActions ?? []);
          for (const a of actions) {
            if (a.includes('*')) v.push(`custom role ${r.name} grants the wildcard ${a}`);
            else if (!DOCUMENTED_ACTIONS.has(a.toLowerCase())) v.push(`custom role ${r.name} grants ${a}, which docs/drivers/azure.md does not list`);
          }
          if (dataActions.length) v.push(`custom role ${r.name} grants data actions ${dataActions.join(', ')}`);
          if (notActions.length) v.push(`custom role ${r.name} has NotActions ${notActions.join(', ')}: the documented roles list what they grant, never what they take back from a wider grant`);
          return v;
        }),
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
