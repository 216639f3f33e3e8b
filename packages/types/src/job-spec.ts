// What a job runs: shared by job definitions (orchestrator), inline executions and the snapshot
// an execution keeps of its job (worker-manager), and the assignment a worker receives.
import { argString, Env, Labels, Priority, Resources } from './common.js';
import { z } from './zod.js';

export const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;

export const JobSpecFields = {
  command: argString('send a longer one as `script`').min(1).optional(),
  script: z.string().min(1).max(1024 * 1024).optional(),
  args: z.array(argString('pass more data in a file')).max(1000).optional(),
  env: Env.optional(),
  working_dir: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path: it is taken on the worker, whose own directory is not yours').optional(),
  timeout_seconds: z.number().int().min(1).max(MAX_TIMEOUT_SECONDS).optional(),
  priority: Priority.optional(),
  resources: Resources.optional(),
  labels: Labels.optional(),
  max_retries: z.number().int().min(0).max(100).optional(),
  retry_backoff_seconds: z.number().int().min(0).max(86_400).optional(),
};


/** The resolved definition an execution runs with: defaults applied, nothing optional left to guess. */
export const JobSpec = z
  .object({
    name: z.string(),
    command: z.string().nullable(),
    script: z.string().nullable(),
    args: z.array(z.string()),
    env: z.record(z.string(), z.string()),
    working_dir: z.string().nullable(),
    timeout_seconds: z.number().int().nullable(),
    priority: z.number().int(),
    resources: z.object({ cpu_cores: z.number(), memory_bytes: z.number() }),
    labels: z.record(z.string(), z.string()),
    max_retries: z.number().int(),
    retry_backoff_seconds: z.number().int(),
  })
  .openapi('JobSpec');
export type JobSpec = z.infer<typeof JobSpec>;

export const DEFAULT_SPEC = {
  args: [] as string[],
  env: {} as Record<string, string>,
  priority: 5,
  resources: { cpu_cores: 0.1, memory_bytes: 64 * 1024 * 1024 },
  labels: {} as Record<string, string>,
  max_retries: 0,
  retry_backoff_seconds: 10,
};
