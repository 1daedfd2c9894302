// Node 20 workers cannot load .ts files: register tsx's loader, then load the real module.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
