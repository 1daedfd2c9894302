// Worker entry for the store worker tests: Node 20 cannot load .ts in a
// worker directly, so register tsx's ESM loader first, then the real module.
import { register } from 'tsx/esm/api';

register();
await import('./store-worker.ts');
