/**
 * In which order a replace runs its two VMs: the new one first when the data
 * center has room for both (no gap in service), else the old one first.
 */
export type ReplaceOrder = 'create-before-delete' | 'delete-before-create';

export const REPLACE_ORDERS: readonly ReplaceOrder[] = ['create-before-delete', 'delete-before-create'];
