/**
 * The part of `fs-native-extensions` (CommonJS with a native addon, no types
 * of its own) the storage layer uses: non-blocking kernel advisory locks on
 * an open file descriptor.
 */
declare module 'fs-native-extensions' {
  /**
   * Tries to lock the whole file open as `fd`: exclusive unless
   * `options.shared`. True when granted, false when a conflicting lock is
   * held (EAGAIN); throws for any other error. Re-locking converts the lock.
   */
  export function tryLock(fd: number, options?: { shared?: boolean }): boolean;
}
