// `env` wherever a service takes it (the shared schemas of @hodei/types): names Hodei sets itself
// for each execution, and names no environment can hold, are a 400 naming the entry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';
import { createTestEnv, serviceAddresses, type RunningService } from '../src/index.js';

const env = createTestEnv();
let orchestrator: RunningService;
let workerManager: RunningService;
let jobId: string;
let pipelineId: string;

async function send(base: string, method: string, path: string, body: unknown, type = 'application/json') {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.json() };
}

beforeAll(async () => {
  const { ports, urls } = await serviceAddresses();
  workerManager = await startWorkerManager(env.config('worker-manager', { urls, port: ports['worker-manager'] }));
  orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
  pipelineId = (await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 'p' })).body.id;
  jobId = (await send(orchestrator.url, 'POST', '/api/v1/jobs', { name: 'j', command: 'true', pipeline_id: pipelineId })).body.id;
});
afterAll(async () => {
  await orchestrator?.stop();
  await workerManager?.stop();
  await env.cleanup();
});

describe('env', () => {
  it('refuses a name Hodei sets for each execution, on every route that takes env', async () => {
    const O = () => orchestrator.url;
    const W = () => workerManager.url;
    const cases: Array<[() => string, string, string, unknown, string, string?]> = [
      [O, 'POST', '/api/v1/jobs', { command: 'true', env: { HODEI_RESULT_FILE: '/tmp/r.json' } }, 'HODEI_RESULT_FILE'],
      [O, 'POST', '/api/v1/jobs', 'command: "true"\nenv:\n  HODEI_EXECUTION_ID: mine\n', 'HODEI_EXECUTION_ID', 'application/yaml'],
      [O, 'PATCH', `/api/v1/jobs/${jobId}`, { env: { HODEI_JOB_ID: 'x' } }, 'HODEI_JOB_ID'],
      [O, 'POST', `/api/v1/pipelines/${pipelineId}/runs`, { env: { HODEI_PIPELINE_RUN_ID: 'x' } }, 'HODEI_PIPELINE_RUN_ID'],
      [O, 'POST', `/api/v1/pipelines/${pipelineId}/runs`, { env: { HODEI_PIPELINE_ID: 'x' } }, 'HODEI_PIPELINE_ID'],
      [W, 'POST', '/api/v1/execute', { command: 'true', env: { HODEI_RESULT_FILE: '/tmp/r.json' } }, 'HODEI_RESULT_FILE'],
      [W, 'POST', '/api/v1/execute', { job_id: jobId, env: { HODEI_EXECUTION_ID: 'x' } }, 'HODEI_EXECUTION_ID'],
      // the worker sets it to the run's span when tracing is on: the job's value was kept or replaced depending on that
      [O, 'POST', '/api/v1/jobs', { command: 'true', env: { TRACEPARENT: '00-11111111111111111111111111111111-2222222222222222-01' } }, 'TRACEPARENT'],
      [W, 'POST', '/api/v1/execute', { command: 'true', env: { TRACEPARENT: 'x' } }, 'TRACEPARENT'],
    ];
    for (const [base, method, path, body, name, type] of cases) {
      const r = await send(base(), method, path, body, type);
      const what = `${method} ${path} ${name}`;
      expect(r.status, what).toBe(400);
      expect(r.type, what).toMatch(/application\/problem\+json/);
      expect(r.body.errors, what).toEqual([{ path: `env.${name}`, message: 'invalid name: is set by Hodei for each execution and cannot be given' }]);
    }
  });

  it('takes other HODEI_ names, and a pipeline run\'s names on worker-manager\'s execute only as the orchestrator sends them', async () => {
    const runId = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';
    const asOrchestrator = { job_id: jobId, env: { HODEI_URL: 'http://127.0.0.1:8080', HODEI_PIPELINE_RUN_ID: runId, HODEI_PIPELINE_ID: pipelineId } };
    const r = await send(workerManager.url, 'POST', '/api/v1/execute', asOrchestrator);
    expect(r.status, r.body.detail).toBe(202);
    expect(r.body.spec.env).toEqual(asOrchestrator.env);

    const otherPipeline = (await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 'other' })).body.id;
    const why = (m: string) => `is set by the orchestrator for a pipeline run's job: ${m}`;
    const refused: Array<[object, string, string]> = [
      [{ command: 'true', env: { HODEI_PIPELINE_RUN_ID: runId, HODEI_PIPELINE_ID: pipelineId } }, 'HODEI_PIPELINE_RUN_ID', why('comes only with job_id')],
      [{ ...asOrchestrator, command: 'curl evil' }, 'HODEI_PIPELINE_RUN_ID', why('comes only with job_id and env, not command')],
      [{ ...asOrchestrator, args: ['x'], priority: 15 }, 'HODEI_PIPELINE_RUN_ID', why('comes only with job_id and env, not args, priority')],
      [{ job_id: jobId, env: { HODEI_PIPELINE_RUN_ID: runId } }, 'HODEI_PIPELINE_RUN_ID', why('comes only with HODEI_PIPELINE_ID')],
      [{ job_id: jobId, env: { HODEI_PIPELINE_ID: pipelineId } }, 'HODEI_PIPELINE_ID', why('comes only with HODEI_PIPELINE_RUN_ID')],
      [{ job_id: jobId, env: { HODEI_PIPELINE_RUN_ID: 'r', HODEI_PIPELINE_ID: pipelineId } }, 'HODEI_PIPELINE_RUN_ID', why('must be a UUID')],
      [{ job_id: jobId, env: { HODEI_PIPELINE_RUN_ID: runId, HODEI_PIPELINE_ID: otherPipeline } }, 'HODEI_PIPELINE_ID', why(`job ${jobId} is not of pipeline ${otherPipeline}`)],
    ];
    for (const [body, name, message] of refused) {
      const res = await send(workerManager.url, 'POST', '/api/v1/execute', body);
      expect([res.status, res.body.detail, res.body.errors], JSON.stringify(body)).toEqual([400, `invalid body: env.${name}`, [{ path: `env.${name}`, message }]]);
    }
    const executions = await fetch(`${workerManager.url}/api/v1/executions?limit=100`).then((res) => res.json());
    expect(executions.map((e: { id: string }) => e.id)).toEqual([r.body.id]);
    const job = await send(orchestrator.url, 'PATCH', `/api/v1/jobs/${jobId}`, { env: { HODEI_API_TOKEN: 't' } });
    expect([job.status, job.body.env]).toEqual([200, { HODEI_API_TOKEN: 't' }]);
  });

  it('names an entry no environment can hold, and says why', async () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ '': 'x' }, 'env.', /^invalid name: must be a valid environment variable name/],
      [{ 'A=B': 'x' }, 'env.A=B', /^invalid name: must be a valid environment variable name/],
      [{ '1A': 'x' }, 'env.1A', /^invalid name: must be a valid environment variable name/],
      [{ ['A'.repeat(256)]: 'x' }, `env.${'A'.repeat(64)}…(256 characters)`, /^invalid name: is longer than 255 characters/],
      [{ A: 'x\u0000y' }, 'env.A', /NUL/],
      [{ A: 1 }, 'env.A', /expected string/],
    ];
    for (const [e, path, message] of cases) {
      for (const [base, route] of [[orchestrator.url, '/api/v1/jobs'], [workerManager.url, '/api/v1/execute']] as const) {
        const r = await send(base, 'POST', route, { command: 'true', env: e });
        expect(r.status, `${route} ${path}`).toBe(400);
        expect(r.body.errors.map((x: { path: string }) => x.path), `${route} ${path}`).toEqual([path]);
        expect(r.body.errors[0].message, `${route} ${path}`).toMatch(message);
      }
    }
  });
});
