// The three custom roles of an Azure data center (docs/drivers/azure.md,
// "Least-privilege role definitions"), as data: azure/index.ts defines them,
// checks/azure.ts holds every declared role to them, and azure.test.ts checks
// they are word for word the docs' JSON.

export interface CustomRole {
  /** The docs' Name; a deployment suffixes it with the resource group (custom role names are unique per Entra tenant). */
  name: string;
  description: string;
  actions: readonly string[];
}

/** What a NIC's subnet reference needs on that subnet (ARM's linked access check when the NIC is written). */
export const SUBNET_JOIN_ACTION = 'Microsoft.Network/virtualNetworks/subnets/join/action';

/**
 * Held by the authority's broker principal at the fleet's resource group (the fleet VMs, their NICs and disks, and
 * nothing of the DMZ's own): every mutating ARM call of the DMZ client but the subnet join, which
 * FLEET_SUBNET_JOIN_ROLE grants on the fleet subnet alone.
 */
export const BROKER_ROLE: CustomRole = {
  name: 'dmzfleet broker',
  description: 'Creates, powers, resizes and deletes dmzfleet VMs, their NICs and disks in one resource group.',
  actions: [
    'Microsoft.Compute/virtualMachines/read',
    'Microsoft.Compute/virtualMachines/write',
    'Microsoft.Compute/virtualMachines/delete',
    'Microsoft.Compute/virtualMachines/start/action',
    'Microsoft.Compute/virtualMachines/powerOff/action',
    'Microsoft.Compute/virtualMachines/deallocate/action',
    'Microsoft.Compute/virtualMachines/instanceView/read',
    'Microsoft.Compute/locations/operations/read',
    'Microsoft.Compute/disks/read',
    'Microsoft.Compute/disks/write',
    'Microsoft.Compute/disks/delete',
    'Microsoft.Compute/images/read',
    'Microsoft.Compute/galleries/images/versions/read',
    'Microsoft.Network/networkInterfaces/read',
    'Microsoft.Network/networkInterfaces/write',
    'Microsoft.Network/networkInterfaces/delete',
    'Microsoft.Network/networkInterfaces/join/action',
    'Microsoft.Network/locations/operations/read',
    'Microsoft.Network/locations/operationResults/read',
  ],
};

/**
 * Held by the broker principal on the fleet subnet alone (defined and assignable on the DMZ's resource group, which
 * holds the VNet: a custom role's assignable scopes are resource groups or wider): the fleet VMs' NICs may join that
 * subnet, and no other of the VNet.
 */
export const FLEET_SUBNET_JOIN_ROLE: CustomRole = {
  name: 'dmzfleet fleet subnet join',
  description: 'Joins network interfaces to the dmzfleet fleet subnet it is assigned on, and to no other subnet.',
  actions: [SUBNET_JOIN_ACTION],
};

/** Held by the DMZ client host's own identity at the fleet's resource group: reads only (get, list). */
export const DMZ_CLIENT_READER_ROLE: CustomRole = {
  name: 'dmzfleet DMZ client reader',
  description: 'Reads dmzfleet VMs and their power state in one resource group.',
  actions: ['Microsoft.Compute/virtualMachines/read', 'Microsoft.Compute/virtualMachines/instanceView/read'],
};

/** Built-in role definitions (their ids are the same in every Azure cloud). */
export const BUILT_IN_ROLES = {
  owner: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c',
  userAccessAdministrator: '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9',
  virtualMachineContributor: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c',
  networkContributor: '4d97b98b-1d4f-4787-a291-c67834d212e7',
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6',
} as const;
