// Worker entry for the simulated-disk worker test: register tsx, then load the real module.
import { register } from 'tsx/esm/api';

register();
await import('./sim-worker.ts');
