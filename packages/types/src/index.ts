export { z } from './zod.js';
export * from './common.js';
export * from './job-spec.js';
export * from './orchestrator.js';
export * from './scheduler.js';
export * from './worker-manager.js';
export * from './events.js';
export * from './log-text.js';
