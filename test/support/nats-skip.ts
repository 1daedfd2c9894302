/**
 * Skipping the tests that need a real `nats-server` where it is not installed,
 * visibly: they are reported as skipped (with how to install it), never as
 * passed, and CI turns a skip into a failure.
 */
import { beforeEach } from 'vitest';
import { NATS_SERVER_INSTALL_HINT, natsServerAvailable } from './nats-cluster.js';

/**
 * Environment variable that makes a missing `nats-server` a failure instead of
 * a skip: CI sets it to `1` after installing the server, so the cluster tests
 * can never silently stop running there.
 */
export const REQUIRE_NATS_SERVER_ENV = 'PWAL_REQUIRE_NATS_SERVER';

/**
 * Probes for `nats-server` once per test file; when it is missing, every test
 * in the calling scope (file or `describe`) is reported as skipped, with the
 * reason and how to install it, or fails when {@link REQUIRE_NATS_SERVER_ENV}
 * is `1`. Returns whether the server is available (for `beforeAll` set-ups).
 */
export function requireNatsServer(suite: string): boolean {
  const available = natsServerAvailable();
  beforeEach((context) => {
    if (available) return;
    if (process.env[REQUIRE_NATS_SERVER_ENV] === '1') {
      throw new Error(
        `[${suite}] nats-server is not on PATH but ${REQUIRE_NATS_SERVER_ENV}=1 requires the ` +
          `cluster tests to run: ${NATS_SERVER_INSTALL_HINT}`,
      );
    }
    context.skip(`[${suite}] nats-server is not on PATH (apt-get install -y nats-server)`);
  });
  return available;
}
