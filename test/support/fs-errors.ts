/**
 * Errors shaped like the ones `node:fs/promises` throws: an `Error` with a
 * string `code`, a negative `errno`, the `syscall` and the `path`, and a
 * message `CODE: description, syscall 'path'`.
 */

const ERRNO: Record<string, [number, string]> = {
  ENOENT: [-2, 'no such file or directory'],
  EIO: [-5, 'i/o error'],
  EBADF: [-9, 'bad file descriptor'],
  EEXIST: [-17, 'file already exists'],
  ENOTDIR: [-20, 'not a directory'],
  EISDIR: [-21, 'illegal operation on a directory'],
  EINVAL: [-22, 'invalid argument'],
  ENOSPC: [-28, 'no space left on device'],
  EROFS: [-30, 'read-only file system'],
  ENOTEMPTY: [-39, 'directory not empty'],
  EACCES: [-13, 'permission denied'],
  EPERM: [-1, 'operation not permitted'],
};

/** The error codes the simulated and faulty file systems produce. */
export type FsErrorCode = keyof typeof ERRNO & string;

/** A Node-shaped file-system error. */
export interface NodeFsError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

/** Builds an error the way libuv/Node would report it. */
export function fsError(code: string, syscall: string, path?: string, dest?: string): NodeFsError {
  const [errno, text] = ERRNO[code] ?? [-1, 'unknown error'];
  const where =
    path === undefined ? '' : dest === undefined ? ` '${path}'` : ` '${path}' -> '${dest}'`;
  const error = new Error(`${code}: ${text}, ${syscall}${where}`) as NodeFsError;
  error.code = code;
  error.errno = errno;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  if (dest !== undefined) error.dest = dest;
  return error;
}

/** True when `error` carries the file-system `code`. */
export function hasFsCode(error: unknown, code: string): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    (error as { code: unknown }).code === code
  );
}
