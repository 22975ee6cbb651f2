/** What a VM is given: whole CPUs, memory and its boot disk in GiB. */
export interface VmSize {
  cpu: number;
  memoryGiB: number;
  diskGiB: number;
}

export function sameSize(a: VmSize, b: VmSize): boolean {
  return a.cpu === b.cpu && a.memoryGiB === b.memoryGiB && a.diskGiB === b.diskGiB;
}

/** `4 CPU / 16 GiB / 100 GiB disk`, for people. */
export function formatSize(s: VmSize): string {
  return `${s.cpu} CPU / ${s.memoryGiB} GiB / ${s.diskGiB} GiB disk`;
}
