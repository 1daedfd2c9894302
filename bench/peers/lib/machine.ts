/** What machine, disk and software a run measured, for the report's header. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { pageReporting } from '../../page-reporting.js';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  uvThreadpoolSize: string;
  benchDir: string;
  filesystem: string;
  device: string;
  /** What creating an empty file costs in the bench directory (see {@link probeFileCreation}). */
  fileCreation?: string;
  /**
   * Whether the kernel hands free memory back to a hypervisor (free page
   * reporting), and the machine's uptime: on such a guest, a page-cache page
   * the run needs anew can cost a fault in the host (bench/flush-breakdown.ts).
   */
  memory?: string;
  strace: string;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** Files the creation probe makes. */
const PROBE_FILES = 500;

/**
 * Creates {@link PROBE_FILES} empty files one after the other in a fresh
 * directory under `dir` (open with O_CREAT|O_EXCL, close), removes them, and
 * reports the wall and CPU time per file. A log that writes each epoch into a
 * file of its own creates one file per epoch, and what that costs is not a
 * constant of the disk: on the machine these benchmarks were developed on,
 * the same loop measured 7–40 µs of CPU per file at some times and 145–360 µs
 * at others (on ext4 with online discard, within one hour). The figure goes
 * in the report so that runs can be told apart.
 */
export function probeFileCreation(dir: string): string {
  const probe = fs.mkdtempSync(`${dir}/create-probe-`);
  try {
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < PROBE_FILES; i++) fs.closeSync(fs.openSync(`${probe}/f${i}`, 'wx'));
    const wallUs = ((performance.now() - started) * 1000) / PROBE_FILES;
    const cpu = process.cpuUsage(cpu0);
    const cpuUs = (cpu.user + cpu.system) / PROBE_FILES;
    return `${wallUs.toFixed(0)} µs per empty file created (open O_CREAT|O_EXCL + close, ${PROBE_FILES} in a row), ${cpuUs.toFixed(0)} µs of it CPU`;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

/** Files the per-cell probe makes: fewer than {@link probeFileCreation}, since it runs after every cell. */
const CELL_PROBE_FILES = 100;

/**
 * CPU microseconds per empty file created in `dir` itself, among the files
 * the cell left there (not in a directory of its own: what a new inode costs
 * varies widely on the machine these benchmarks were developed on, from one
 * directory and one moment to the next; see `bench/file-create.ts` and
 * `bench/recent-deletes.ts`). The files stay (emptied or deleted with the
 * cell's); the directory is fsynced before it returns. `undefined`
 * if the probe itself fails (a full disk): the run goes on without it.
 */
export function cellFileCreationMicros(dir: string): number | undefined {
  try {
    return probeCell(dir);
  } catch {
    return undefined;
  }
}

function probeCell(dir: string): number {
  const cpu0 = process.cpuUsage();
  const paths = Array.from({ length: CELL_PROBE_FILES }, (_, i) => `${dir}/create-probe-${i}`);
  for (const file of paths) fs.closeSync(fs.openSync(file, 'wx'));
  const cpu = process.cpuUsage(cpu0);
  // Left in place, with the cell's files (lib/cell-dirs.ts): deleting them would
  // make the next minute's creations dearer.
  const dirFd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
  return (cpu.user + cpu.system) / CELL_PROBE_FILES;
}

/** Free page reporting to the host (on, its order and total so far; or absent) and the uptime. */
function memoryReporting(): string {
  const reporting = pageReporting();
  const uptime = `up ${Math.round(os.uptime() / 60)} min`;
  if (!reporting.present) return `free page reporting: not present; ${uptime}`;
  const total =
    reporting.reportedKib === null
      ? 'the kernel keeps no count of it'
      : `${(reporting.reportedKib / 2 ** 20).toFixed(1)} GiB reported since boot`;
  return `free page reporting to the host: on (blocks of order ${reporting.order}; ${total}); ${uptime}`;
}

/** Reads CPU, kernel, and the filesystem and block device under `dir`. */
export function collectMachineInfo(dir: string, why: string, strace: boolean): MachineInfo {
  const cpuinfo = readOr('/proc/cpuinfo', '');
  const cpuModel = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? '?';
  const mnt = sh('findmnt', ['-no', 'SOURCE,FSTYPE,OPTIONS', '-T', dir]);
  const [source = '?', fstype = '?', options = ''] = mnt.split(/\s+/);
  const df = sh('df', ['-h', '--output=size,avail', dir]).split('\n')[1]?.trim() ?? '';
  const dev = source.replace(/^\/dev\//, '').replace(/[0-9]+$/, '');
  const rotational = readOr(`/sys/block/${dev}/queue/rotational`, '?');
  const scheduler = readOr(`/sys/block/${dev}/queue/scheduler`, '?');
  const model = readOr(`/sys/block/${dev}/device/model`, '');
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
    benchDir: why,
    filesystem: `${fstype} on ${source} (${options}); size/avail ${df}${fstype === 'ext4' ? `; ext4 journal: ${readOr(`/sys/fs/ext4/${source.replace(/^\/dev\//, '')}/journal_task`, 'unknown').trim() || 'unknown'}` : ''}`,
    device: `${source}${model ? ` ${model}` : ''}, rotational=${rotational}, scheduler ${scheduler}`,
    fileCreation: probeFileCreation(dir),
    memory: memoryReporting(),
    strace: strace ? sh('strace', ['-V']).split('\n')[0] || 'strace' : 'not used',
  };
}
