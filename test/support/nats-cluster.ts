/**
 * Starts and stops a real 3-node NATS JetStream cluster on loopback ports for
 * the replication tests and the replication benchmark.
 *
 * Every node gets its own temp store directory and free loopback ports for
 * clients, routes and monitoring. Nodes can be killed (SIGKILL) and restarted
 * with the same ports and store, which is how the tests take a replica away
 * while commits keep flowing. Every wait is bounded; {@link NatsCluster.stop}
 * kills whatever is still running, and a process `exit` hook makes sure no
 * child survives a crashed test run.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** How long a node may take to accept client connections after spawn. */
export const NODE_START_TIMEOUT_MS = 10_000;
/** How long the cluster may take to elect a JetStream meta leader. */
export const CLUSTER_READY_TIMEOUT_MS = 20_000;
/** How long a stopped node may take to exit after SIGTERM before SIGKILL. */
export const NODE_STOP_TIMEOUT_MS = 3_000;
/** Poll period of the readiness checks. */
const READY_POLL_MS = 50;

/** True when a `nats-server` binary is on PATH. */
export function natsServerAvailable(): boolean {
  const probe = spawnSync('nats-server', ['--version'], { stdio: 'ignore', timeout: 5_000 });
  return probe.status === 0;
}

/**
 * For benchmarks: starts a cluster, or says how to install `nats-server` and
 * returns `null`.
 */
export async function startBenchCluster(): Promise<NatsCluster | null> {
  if (!natsServerAvailable()) {
    console.log(`nats-server is not on PATH: ${NATS_SERVER_INSTALL_HINT} to run this benchmark`);
    return null;
  }
  return NatsCluster.start();
}

/** How to get `nats-server`, printed wherever tests that need it are skipped. */
export const NATS_SERVER_INSTALL_HINT =
  'install nats-server (Debian/Ubuntu: `apt-get install -y nats-server`; elsewhere a release ' +
  'binary from https://github.com/nats-io/nats-server/releases on PATH)';

interface NodeSpec {
  name: string;
  clientPort: number;
  clusterPort: number;
  monitorPort: number;
  storeDir: string;
  configPath: string;
  logPath: string;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}

/** Finds `count` distinct free loopback ports (bind to port 0, read, release). */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      ports.push(address.port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
  return ports;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves true when a TCP connection to 127.0.0.1:port succeeds. */
function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function fetchJson(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  return response.json();
}

/** A running 3-node (by default) JetStream cluster on loopback. */
export class NatsCluster {
  private readonly children = new Map<string, ChildProcess>();

  private constructor(
    readonly rootDir: string,
    private readonly nodes: NodeSpec[],
  ) {}

  /** Client URLs of all nodes (`nats://127.0.0.1:port`). */
  get urls(): string[] {
    return this.nodes.map((n) => `nats://127.0.0.1:${n.clientPort}`);
  }

  /** Node names, `n1`…`nN`. */
  get nodeNames(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** Starts a cluster and waits (bounded) until JetStream has a meta leader. */
  static async start(options: { nodeCount?: number } = {}): Promise<NatsCluster> {
    installExitHook();
    const nodeCount = options.nodeCount ?? 3;
    const rootDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-nats-'));
    const ports = await freePorts(nodeCount * 3);
    const nodes: NodeSpec[] = [];
    for (let i = 0; i < nodeCount; i++) {
      const name = `n${i + 1}`;
      const storeDir = path.join(rootDir, name);
      fs.mkdirSync(storeDir, { recursive: true });
      nodes.push({
        name,
        clientPort: ports[i * 3]!,
        clusterPort: ports[i * 3 + 1]!,
        monitorPort: ports[i * 3 + 2]!,
        storeDir,
        configPath: path.join(rootDir, `${name}.conf`),
        logPath: path.join(rootDir, `${name}.log`),
      });
    }
    for (const node of nodes) fs.writeFileSync(node.configPath, configFor(node, nodes));
    const cluster = new NatsCluster(rootDir, nodes);
    try {
      for (const node of nodes) cluster.spawnNode(node);
      for (const node of nodes) await cluster.waitNodeListening(node);
      await cluster.waitReady();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  private spawnNode(node: NodeSpec): void {
    const log = fs.openSync(node.logPath, 'a');
    const child = spawn('nats-server', ['-c', node.configPath], {
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    this.children.set(node.name, child);
  }

  private node(name: string): NodeSpec {
    const node = this.nodes.find((n) => n.name === name);
    if (node === undefined) throw new Error(`no node ${name}`);
    return node;
  }

  private async waitNodeListening(node: NodeSpec): Promise<void> {
    const deadline = Date.now() + NODE_START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await canConnect(node.clientPort)) return;
      const child = this.children.get(node.name);
      if (child?.exitCode !== null && child?.exitCode !== undefined) {
        throw new Error(`nats-server ${node.name} exited: ${this.tail(node)}`);
      }
      await delay(READY_POLL_MS);
    }
    throw new Error(`nats-server ${node.name} not listening after ${NODE_START_TIMEOUT_MS} ms`);
  }

  /**
   * Waits until every running node reports the same JetStream meta leader and
   * a full set of meta peers (via the monitoring `/jsz` endpoint).
   */
  async waitReady(timeoutMs = CLUSTER_READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const running = this.nodes.filter((n) => this.isRunning(n.name));
    while (Date.now() < deadline) {
      const leaders = await Promise.all(running.map((n) => this.metaLeader(n)));
      const first = leaders[0];
      if (first && leaders.every((l) => l === first)) return;
      await delay(READY_POLL_MS * 2);
    }
    throw new Error(`JetStream cluster not ready after ${timeoutMs} ms`);
  }

  private async metaLeader(node: NodeSpec): Promise<string | undefined> {
    try {
      const jsz = (await fetchJson(`http://127.0.0.1:${node.monitorPort}/jsz`)) as {
        meta_cluster?: { leader?: string; replicas?: unknown[] };
      };
      const meta = jsz.meta_cluster;
      if (!meta?.leader) return undefined;
      return meta.leader;
    } catch {
      return undefined;
    }
  }

  /** True while the node's process is alive. */
  isRunning(name: string): boolean {
    const child = this.children.get(name);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** SIGKILLs one node (a crash: no graceful leadership hand-off). */
  async kill(name: string): Promise<void> {
    const child = this.children.get(name);
    if (child === undefined || !this.isRunning(name)) return;
    await this.terminate(child, 'SIGKILL');
  }

  /** Restarts a killed node with its ports and store directory. */
  async restart(name: string): Promise<void> {
    const node = this.node(name);
    if (this.isRunning(name)) return;
    this.spawnNode(node);
    await this.waitNodeListening(node);
  }

  /** Kills every node, waits for the processes to exit and removes the temp dirs. */
  async stop(): Promise<void> {
    await Promise.all([...this.children.values()].map((child) => this.terminate(child, 'SIGKILL')));
    this.children.clear();
    fs.rmSync(this.rootDir, { recursive: true, force: true });
  }

  private async terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = delay(NODE_STOP_TIMEOUT_MS).then(() => {
      child.kill('SIGKILL');
    });
    await Promise.race([exited, timer]);
    await exited;
  }

  private tail(node: NodeSpec): string {
    try {
      return fs.readFileSync(node.logPath, 'utf8').slice(-2_000);
    } catch {
      return '(no log)';
    }
  }
}

function configFor(node: NodeSpec, all: readonly NodeSpec[]): string {
  const routes = all
    .filter((n) => n !== node)
    .map((n) => `    "nats-route://127.0.0.1:${n.clusterPort}"`)
    .join('\n');
  return [
    `server_name: ${node.name}`,
    `listen: "127.0.0.1:${node.clientPort}"`,
    `http: "127.0.0.1:${node.monitorPort}"`,
    'jetstream {',
    `  store_dir: ${JSON.stringify(node.storeDir)}`,
    '  max_memory_store: 64MB',
    '  max_file_store: 1GB',
    '}',
    'cluster {',
    '  name: pwal-test',
    `  listen: "127.0.0.1:${node.clusterPort}"`,
    '  routes: [',
    routes,
    '  ]',
    '}',
    '',
  ].join('\n');
}
