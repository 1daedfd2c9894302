/** Every benchmarked system, by name, loaded lazily so one missing peer does not stop the rest. */
import type { SystemDef } from '../lib/system.js';

export const SYSTEM_NAMES = [
  'pwal',
  'pwalpre',
  'pwalearly',
  'pwalinline',
  'pwalpool',
  'pwalcaller',
  'pwaltrunc',
  'sqlite',
  'lmdb',
  'level',
  'rocksdb',
  'floor',
  'floorseg',
  'flooro',
  'gcring',
  'gcseg',
  'gcfresh',
] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

export async function loadSystem(name: string): Promise<SystemDef> {
  switch (name) {
    case 'pwal':
      return (await import('./pwal.js')).pwal;
    case 'pwalpre':
      return (await import('./pwal.js')).pwalPrecreate;
    case 'pwalearly':
      return (await import('./pwal.js')).pwalEarlyAck;
    case 'pwalinline':
      return (await import('./pwal.js')).pwalInline;
    case 'pwalpool':
      return (await import('./pwal.js')).pwalPool;
    case 'pwalcaller':
      return (await import('./pwal.js')).pwalCaller;
    case 'pwaltrunc':
      return (await import('./pwal.js')).pwalTruncating;
    case 'sqlite':
      return (await import('./sqlite.js')).sqlite;
    case 'lmdb':
      return (await import('./lmdb.js')).lmdb;
    case 'level':
      return (await import('./level.js')).level;
    case 'rocksdb':
      return (await import('./rocksdb.js')).rocksdb;
    case 'floor':
      return (await import('./floor.js')).floor;
    case 'floorseg':
      return (await import('./floor.js')).floorSegment;
    case 'flooro':
      return (await import('./floor.js')).floorOverwrite;
    case 'gcring':
      return (await import('./group-floor.js')).groupRing;
    case 'gcseg':
      return (await import('./group-floor.js')).groupSegment;
    case 'gcfresh':
      return (await import('./group-floor.js')).groupFresh;
    default:
      throw new Error(`unknown system ${name}; known: ${SYSTEM_NAMES.join(', ')}`);
  }
}
