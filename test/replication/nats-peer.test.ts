import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { ReplicationErrorCode, ReplicationPeerMissingError } from '../../src/replication/errors.js';
import {
  importNatsPeers,
  loadNats,
  NATS_PEER_PACKAGES,
  type PeerImporter,
} from '../../src/replication/nats/peer.js';

/** An importer for which `missing` cannot be resolved, the way Node reports it. */
function without(missing: readonly string[], code = 'ERR_MODULE_NOT_FOUND'): PeerImporter {
  return async (name) => {
    if (!missing.includes(name)) return import(name);
    const error = new Error(`Cannot find package '${name}' imported from /app/index.js`);
    (error as NodeJS.ErrnoException).code = code;
    throw error;
  };
}

describe('the optional NATS peer dependencies', () => {
  it('names the one missing package and the install command in a typed error', async () => {
    const error = await importNatsPeers(without(['@nats-io/obj'])).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ReplicationPeerMissingError);
    expect(isWalError(error, ReplicationErrorCode.peerMissing)).toBe(true);
    const missing = error as ReplicationPeerMissingError;
    expect(missing.missing).toEqual(['@nats-io/obj']);
    expect(missing.message).toContain('optional peer dependency @nats-io/obj,');
    expect(missing.message).toContain(
      "npm install @nats-io/transport-node@'^3.3.1' @nats-io/jetstream@'^3.3.1' @nats-io/obj@'^3.3.1'",
    );
  });

  it('names every missing package, also when CommonJS reports MODULE_NOT_FOUND', async () => {
    const all = Object.keys(NATS_PEER_PACKAGES);
    const error = await importNatsPeers(without(all, 'MODULE_NOT_FOUND')).then(
      () => null,
      (e: unknown) => e,
    );
    expect((error as ReplicationPeerMissingError).missing).toEqual(all);
  });

  it('passes on a failure inside an installed package instead of calling it missing', async () => {
    const broken: PeerImporter = async (name) => {
      if (name !== '@nats-io/jetstream') return import(name);
      const error = new Error("Cannot find package '@nats-io/nats-core' imported from x");
      (error as NodeJS.ErrnoException).code = 'ERR_MODULE_NOT_FOUND';
      throw error;
    };
    await expect(importNatsPeers(broken)).rejects.toThrow(/@nats-io\/nats-core/);
    await expect(importNatsPeers(broken)).rejects.not.toBeInstanceOf(ReplicationPeerMissingError);
  });

  it('loads the installed packages once and shares them', async () => {
    const first = await loadNats();
    expect(typeof first.transport.connect).toBe('function');
    expect(typeof first.jetstream.jetstreamManager).toBe('function');
    expect(typeof first.obj.Objm).toBe('function');
    expect(await loadNats()).toBe(first);
  });
});
