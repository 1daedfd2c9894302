/**
 * The NATS client packages are optional peer dependencies: only replication
 * needs them, so an application that never replicates installs nothing from
 * NATS. They are therefore never imported statically: every replication call
 * that talks to NATS first awaits {@link loadNats}, which imports them once and
 * turns a missing package into a {@link ReplicationPeerMissingError} naming it.
 * Importing the package (even `parallel-wal/replication`) never loads them.
 */
import type * as JetStreamModule from '@nats-io/jetstream';
import type * as ObjModule from '@nats-io/obj';
import type * as TransportModule from '@nats-io/transport-node';
import { ReplicationPeerMissingError } from '../errors.js';

/** The NATS packages replication needs, with the version range it is tested with. */
export const NATS_PEER_PACKAGES = {
  '@nats-io/transport-node': '^3.3.1',
  '@nats-io/jetstream': '^3.3.1',
  '@nats-io/obj': '^3.3.1',
} as const;

/** The loaded NATS client modules. */
export interface NatsModules {
  readonly transport: typeof TransportModule;
  readonly jetstream: typeof JetStreamModule;
  readonly obj: typeof ObjModule;
}

/** Imports one package; how the tests make a package unresolvable. */
export type PeerImporter = (name: keyof typeof NATS_PEER_PACKAGES) => Promise<unknown>;

/** The import calls are literal so that bundlers keep them as external dynamic imports. */
const defaultImporter: PeerImporter = (name) => {
  switch (name) {
    case '@nats-io/transport-node':
      return import('@nats-io/transport-node');
    case '@nats-io/jetstream':
      return import('@nats-io/jetstream');
    case '@nats-io/obj':
      return import('@nats-io/obj');
  }
};

let loaded: NatsModules | undefined;
let loading: Promise<NatsModules> | undefined;

/** The install command for all NATS peers, as printed in the error. */
export function natsInstallCommand(): string {
  const specs = Object.entries(NATS_PEER_PACKAGES).map(([name, range]) => `${name}@'${range}'`);
  return `npm install ${specs.join(' ')}`;
}

/**
 * The NATS modules, imported on first call (later calls share the result).
 * Rejects with {@link ReplicationPeerMissingError} when any is not installed;
 * a later call tries again (the packages may have been installed since).
 */
export function loadNats(importer: PeerImporter = defaultImporter): Promise<NatsModules> {
  if (loaded !== undefined) return Promise.resolve(loaded);
  loading ??= importNatsPeers(importer).then(
    (modules) => {
      loaded = modules;
      return modules;
    },
    (error: unknown) => {
      loading = undefined;
      throw error;
    },
  );
  return loading;
}

/**
 * The NATS modules if {@link loadNats} has loaded them, else `undefined`. For
 * synchronous checks (is this error a JetStream API error?): a NATS error can
 * only reach code that loaded the modules to make the call.
 */
export function loadedNats(): NatsModules | undefined {
  return loaded;
}

/**
 * Imports the NATS modules with `importer`, without the cache of
 * {@link loadNats} (tests use it to make a package unresolvable).
 */
export async function importNatsPeers(importer: PeerImporter): Promise<NatsModules> {
  const names = Object.keys(NATS_PEER_PACKAGES) as (keyof typeof NATS_PEER_PACKAGES)[];
  const settled = await Promise.allSettled(names.map((name) => importer(name)));
  const missing: string[] = [];
  let firstCause: unknown;
  settled.forEach((result, i) => {
    if (result.status === 'fulfilled') return;
    const name = names[i]!;
    if (!isNotFound(result.reason, name)) throw result.reason;
    missing.push(name);
    firstCause ??= result.reason;
  });
  if (missing.length > 0) {
    throw new ReplicationPeerMissingError(missing, natsInstallCommand(), firstCause);
  }
  const [transport, jetstream, obj] = settled.map(
    (result) => (result as PromiseFulfilledResult<unknown>).value,
  );
  return {
    transport: transport as typeof TransportModule,
    jetstream: jetstream as typeof JetStreamModule,
    obj: obj as typeof ObjModule,
  };
}

/**
 * True when `error` says the package itself cannot be found (ESM
 * `ERR_MODULE_NOT_FOUND`, CommonJS `MODULE_NOT_FOUND`), not some other load
 * failure inside an installed package, which is rethrown as it is.
 */
function isNotFound(error: unknown, name: string): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  return error.message.includes(`'${name}'`) || error.message.includes(`"${name}"`);
}
