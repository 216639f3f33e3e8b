// For tests: does a real response agree with the OpenAPI 3.0 document the service serves? Its
// status must be documented for the operation, its content type too, the headers a client acts on
// (Location, X-Total-Count) as well, and a JSON body must match the
// schema. An object schema with properties and no `additionalProperties` is taken as closed: the
// documents come from zod objects, so a field the response has and the schema lacks is a field the
// document forgot.

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  nullable?: boolean;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  allOf?: Schema[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  minimum?: number;
  maximum?: number;
}

interface Operation {
  responses: Record<string, { content?: Record<string, { schema?: Schema }>; headers?: Record<string, unknown> }>;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

export interface ObservedResponse {
  method: string;
  /** The request path (a query is ignored). */
  path: string;
  status: number;
  /** The Content-Type header, parameters included or not. */
  contentType: string | null;
  text: string;
  /** The response's headers, by lower-case name; those in DOCUMENTED_HEADERS must be in the document when sent. */
  headers?: Record<string, string>;
}

/** Response headers a client acts on: one the answer sends must be documented for its status. */
const DOCUMENTED_HEADERS = ['Location', 'X-Total-Count'];

/** What in `r` the document does not describe; empty when it conforms. */
export function responseProblems(doc: OpenApiDocument, r: ObservedResponse): string[] {
  const path = r.path.split('?')[0]!;
  const method = r.method.toLowerCase();
  const template = Object.keys(doc.paths).find(
    (t) => doc.paths[t]![method] && new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path),
  );
  if (!template) return [`${r.method} ${path}: not in the document`];
  const op = `${r.method} ${template} ${r.status}`;
  const documented = doc.paths[template]![method]!.responses;
  const response = documented[String(r.status)] ?? documented.default;
  if (!response) return [`${op}: status not documented (${Object.keys(documented).join(', ')})`];
  const headers = DOCUMENTED_HEADERS.filter((h) => r.headers?.[h.toLowerCase()] !== undefined && !response.headers?.[h]).map((h) => `${op}: header ${h} not documented`);
  return [...headers, ...bodyProblems(doc, op, response, r)];
}

function bodyProblems(doc: OpenApiDocument, op: string, response: Operation['responses'][string], r: ObservedResponse): string[] {
  if (!response.content) return r.text === '' ? [] : [`${op}: a body, where the document has none`];
  const type = (r.contentType ?? '').split(';')[0]!.trim();
  const media = response.content[type];
  if (!media) return [`${op}: content type ${type || '(none)'} not documented (${Object.keys(response.content).join(', ')})`];
  if (!type.endsWith('json') || !media.schema) return [];
  let body: unknown;
  try {
    body = JSON.parse(r.text);
  } catch {
    return [`${op}: the ${type} body is not JSON`];
  }
  return schemaProblems(doc, media.schema, body, '$').map((p) => `${op}: ${p}`);
}

function schemaProblems(doc: OpenApiDocument, given: Schema, value: unknown, at: string): string[] {
  const schema = resolve(doc, given);
  const problems: string[] = [];
  for (const s of schema.allOf ?? []) problems.push(...schemaProblems(doc, s, value, at));
  const branches = schema.anyOf ?? schema.oneOf;
  if (branches) {
    const results = branches.map((s) => schemaProblems(doc, s, value, at));
    if (!results.some((p) => p.length === 0)) problems.push(`${at}: matches none of its alternatives (${results.map((p) => p[0]).join('; ')})`);
    return problems;
  }
  if (value === null) {
    if (!schema.nullable && (schema.type !== undefined || schema.properties)) problems.push(`${at}: null, and the schema is not nullable`);
    return problems;
  }
  if (schema.enum && !schema.enum.includes(value)) problems.push(`${at}: ${JSON.stringify(value)} is none of ${JSON.stringify(schema.enum)}`);
  const actual = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value;
  if (schema.type && schema.type !== actual && !(schema.type === 'number' && actual === 'integer')) {
    return [...problems, `${at}: ${actual}, the schema says ${schema.type}`];
  }
  if (actual === 'object' && (schema.properties || schema.additionalProperties !== undefined)) {
    const object = value as Record<string, unknown>;
    const properties = schema.properties ?? {};
    for (const name of schema.required ?? []) if (!(name in object)) problems.push(`${at}.${name}: required, missing`);
    for (const [name, v] of Object.entries(object)) {
      const property = properties[name] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      if (property) problems.push(...schemaProblems(doc, property, v, `${at}.${name}`));
      else if (schema.additionalProperties !== true) problems.push(`${at}.${name}: in the response, not in the schema`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => problems.push(...schemaProblems(doc, schema.items!, v, `${at}[${i}]`)));
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${at}: ${value} is under the minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${at}: ${value} is over the maximum ${schema.maximum}`);
  }
  if (typeof value === 'string' && schema.format === 'date-time' && Number.isNaN(Date.parse(value))) problems.push(`${at}: not a date-time`);
  return problems;
}

function resolve(doc: OpenApiDocument, schema: Schema): Schema {
  if (!schema.$ref) return schema;
  const name = schema.$ref.replace('#/components/schemas/', '');
  const found = doc.components?.schemas?.[name];
  if (!found) throw new Error(`the document has no schema ${schema.$ref}`);
  return resolve(doc, found);
}

/** Sends the request and returns the response with what in it the document does not describe. */
export async function conformingFetch(
  doc: OpenApiDocument,
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any; problems: string[] }> {
  const res = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const contentType = res.headers.get('content-type');
  const problems = responseProblems(doc, { method, path, status: res.status, contentType, text, headers: Object.fromEntries(res.headers) });
  return { status: res.status, body: contentType?.includes('json') && text ? JSON.parse(text) : text, problems };
}
