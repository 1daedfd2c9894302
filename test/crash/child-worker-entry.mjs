// Worker entry of the SIGKILL child: Node 20 cannot load .ts in a worker
// directly, so register tsx's ESM loader first, then load the real module.
import { register } from 'tsx/esm/api';

register();
await import('./child-worker.ts');
