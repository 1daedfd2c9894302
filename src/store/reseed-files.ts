/**
 * The names of the files a replica's re-seed from a snapshot leaves beside
 * the database (see `ReplicaStore.reseed`). They are here, below both the
 * page store and the replica store, because the page store must refuse a
 * database whose re-seed was interrupted, and the replica store writes and
 * finishes them.
 */

/** `<db>-pwal-reseed-image`: a snapshot being written for `ReplicaStore.reseed`. */
export function reseedImagePath(dbPath: string): string {
  return `${dbPath}-pwal-reseed-image`;
}

/** `<db>-pwal-reseed`: the new store header, durable once the image is; removed when the switch is done. */
export function reseedMarkerPath(dbPath: string): string {
  return `${dbPath}-pwal-reseed`;
}
