/**
 * The shared set-up of a test file that runs against a real 3-node
 * JetStream cluster: starts it before the file's tests (when `nats-server`
 * is installed; otherwise every test of the file is reported as skipped, see
 * {@link requireNatsServer}), hands out temporary database paths, and removes
 * both afterwards.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { ReplicatedStoreOptions } from '../../src/replication/replicated-store.js';
import { NatsCluster } from './nats-cluster.js';
import { requireNatsServer } from './nats-skip.js';

/** How long the cluster may take to start. */
export const CLUSTER_SUITE_START_TIMEOUT_MS = 30_000;

/** What {@link clusterSuite} gives a test file. */
export interface ClusterSuite {
  /** The running cluster, or `null` when `nats-server` is not installed. */
  readonly cluster: NatsCluster | null;
  /** A fresh `<tmp dir>/db` path, removed after the file's tests. */
  tempDb(): string;
  /** Replication options of a page store shipping to `stream` (R3, `<stream>.epochs`). */
  replication(stream: string): ReplicatedStoreOptions['replication'];
}

/** Registers the cluster's start and stop for the calling test file. */
export function clusterSuite(suite: string): ClusterSuite {
  const available = requireNatsServer(suite);
  let cluster: NatsCluster | null = null;
  const dirs: string[] = [];
  beforeAll(async () => {
    if (available) cluster = await NatsCluster.start();
  }, CLUSTER_SUITE_START_TIMEOUT_MS);
  afterAll(async () => {
    await cluster?.stop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    get cluster() {
      return cluster;
    },
    tempDb() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
      dirs.push(dir);
      return path.join(dir, 'db');
    },
    replication(stream: string) {
      if (cluster === null) throw new Error('the cluster is not running');
      return {
        servers: cluster.urls,
        stream,
        subject: `${stream}.epochs`,
        replicas: 3,
        connectTimeoutMs: 1_000,
      };
    },
  };
}
