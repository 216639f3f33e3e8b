// The checker the services' openapi tests use: it must notice what a document forgot.
import { describe, expect, it } from 'vitest';
import { responseProblems, type OpenApiDocument } from '../src/openapi-conformance.js';

const doc: OpenApiDocument = {
  paths: {
    '/api/v1/things/{id}': {
      get: {
        responses: {
          200: { content: { 'application/json': { schema: { $ref: '#/components/schemas/Thing' } } } },
          404: { content: { 'application/problem+json': { schema: { type: 'object', properties: { status: { type: 'integer' } } } } } },
        },
      },
    },
  },
  components: {
    schemas: {
      Thing: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          size: { type: 'integer', minimum: 0 },
          note: { type: 'string', nullable: true },
          kind: { type: 'string', enum: ['a', 'b'] },
          labels: { type: 'object', additionalProperties: { type: 'string' } },
        },
        required: ['id', 'size'],
      },
    },
  },
};
const get = (status: number, body: unknown, contentType = 'application/json; charset=utf-8') =>
  responseProblems(doc, { method: 'GET', path: '/api/v1/things/x1?full=true', status, contentType, text: JSON.stringify(body) });

describe('responseProblems', () => {
  it('passes a response the document describes', () => {
    expect(get(200, { id: 'x1', size: 3, note: null, kind: 'a', labels: { k: 'v' } })).toEqual([]);
    expect(get(404, { status: 404 }, 'application/problem+json')).toEqual([]);
  });

  it('names fields the schema lacks, missing required ones, wrong types, nulls and enums', () => {
    expect(get(200, { id: 'x1', size: -1, extra: true, kind: 'c', labels: { k: 1 } })).toEqual([
      'GET /api/v1/things/{id} 200: $.size: -1 is under the minimum 0',
      'GET /api/v1/things/{id} 200: $.extra: in the response, not in the schema',
      'GET /api/v1/things/{id} 200: $.kind: "c" is none of ["a","b"]',
      'GET /api/v1/things/{id} 200: $.labels.k: integer, the schema says string',
    ]);
    expect(get(200, { id: null })).toEqual([
      'GET /api/v1/things/{id} 200: $.size: required, missing',
      'GET /api/v1/things/{id} 200: $.id: null, and the schema is not nullable',
    ]);
  });

  it('names a Location or X-Total-Count the answer sends and the document does not', () => {
    const ok = { id: 'x1', size: 3 };
    const observed = (headers: Record<string, string>) =>
      responseProblems(doc, { method: 'GET', path: '/api/v1/things/x1', status: 200, contentType: 'application/json', text: JSON.stringify(ok), headers });
    expect(observed({ 'x-request-id': 'r', etag: 'W/"1"' })).toEqual([]);
    expect(observed({ location: '/api/v1/things/x1', 'x-total-count': '1' })).toEqual([
      'GET /api/v1/things/{id} 200: header Location not documented',
      'GET /api/v1/things/{id} 200: header X-Total-Count not documented',
    ]);
  });

  it('names undocumented statuses, content types and paths', () => {
    expect(get(409, {})).toEqual(['GET /api/v1/things/{id} 409: status not documented (200, 404)']);
    expect(get(404, { status: 404 })).toEqual(['GET /api/v1/things/{id} 404: content type application/json not documented (application/problem+json)']);
    expect(responseProblems(doc, { method: 'DELETE', path: '/api/v1/things/x1', status: 204, contentType: null, text: '' })).toEqual([
      'DELETE /api/v1/things/x1: not in the document',
    ]);
  });
});
