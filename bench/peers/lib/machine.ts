/** What machine, disk and software a run measured, for the report's header. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

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
    filesystem: `${fstype} on ${source} (${options}); size/avail ${df}`,
    device: `${source}${model ? ` ${model}` : ''}, rotational=${rotational}, scheduler ${scheduler}`,
    strace: strace ? sh('strace', ['-V']).split('\n')[0] || 'strace' : 'not used',
  };
}
