// zod extended once with `.openapi()`, so every schema can describe itself in the OpenAPI documents.
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);
// a field left out of a body: said so, not 'expected string, received undefined' (JSON has no undefined)
z.config({ customError: (issue) => (issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : undefined) });

export { z };
