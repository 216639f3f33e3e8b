// `node --import ./trace-loads.mjs …`: appends the URL of every module the process loads to $TRACE_FILE.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.TRACE_FILE, url + '\\n');
  return next(url, context);
}`),
);
