/**
 * Whether this kernel hands free memory back to a hypervisor (free page
 * reporting, `mm/page_reporting.c`): the module's `page_reporting_order`
 * parameter exists when it is built in. Some kernels also count what they
 * reported (`reported_kib`); stock ones may not.
 */
import * as fs from 'node:fs';

const PARAMETERS = '/sys/module/page_reporting/parameters';

/** What the kernel says about free page reporting. */
export interface PageReporting {
  /** The reporting code is there (its order parameter exists). */
  present: boolean;
  /** Smallest block it reports, as a page order (9: 2 MiB), or null. */
  order: number | null;
  /** KiB reported since boot, or null when the kernel keeps no such counter. */
  reportedKib: number | null;
}

function readNumber(name: string): number | null {
  try {
    const value = Number(fs.readFileSync(`${PARAMETERS}/${name}`, 'utf8').trim());
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/** Reads the module's parameters now. */
export function pageReporting(): PageReporting {
  const order = readNumber('page_reporting_order');
  return { present: order !== null, order, reportedKib: readNumber('reported_kib') };
}

/** MiB reported between two readings, or a sentence saying why it is not known. */
export function reportedBetween(before: PageReporting, after: PageReporting): string {
  if (!after.present) return 'no free page reporting on this machine';
  if (before.reportedKib === null || after.reportedKib === null) {
    return 'free page reporting is on; this kernel keeps no count of what it reported';
  }
  return `${((after.reportedKib - before.reportedKib) / 1024).toFixed(0)} MiB reported to the host`;
}
