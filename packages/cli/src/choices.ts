// The choices options offer, known without loading the schemas (test/choices.test.ts holds them to @hodei/types).
export const WORKER_STATUSES = ['starting', 'running', 'draining', 'stopped', 'exited'];
export const EXECUTION_STATUSES = ['pending', 'queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'lost'];
