// Short ids: any unique prefix of at least 4 characters (or, where things have names, an exact
// name) stands for the full id; an ambiguous prefix lists what it matches.
import type { z } from '@hodei/types';
import type { ServiceName } from './config.js';
import { CliError } from './errors.js';
import type { HodeiClient, Query } from './http.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const MIN_PREFIX = 4;

export interface Candidate {
  id: string;
  kind: string;
  /** Shown when the prefix is ambiguous. */
  label: string;
  name?: string | null;
  created_at?: string;
}

/** Every item of a list endpoint, page by page (bounded). */
export async function listAll<S extends z.ZodType>(
  client: HodeiClient,
  service: ServiceName,
  path: string,
  item: S,
  query: Query = {},
  maxPages = 20,
): Promise<z.infer<S>[]> {
  const all: z.infer<S>[] = [];
  for (let page = 0; page < maxPages; page++) {
    const { items } = await client.list(service, path, item, { ...query, limit: 1000, offset: page * 1000 });
    all.push(...items);
    if (items.length < 1000) break;
  }
  return all;
}

/** Ambiguous matches listed, at most. */
const SHOWN = 20;

/** Could be the start of an id (hex digits and dashes): what `?id_prefix=` takes. */
export const ID_PREFIX = /^[0-9a-f-]{1,36}$/;

/**
 * The items of a list endpoint whose id begins with `text`, found by the service (`?id_prefix=`,
 * from an index), not among pages of a listing: up to SHOWN + 1 of them, and how many in all.
 * None when `text` cannot begin an id.
 */
export async function idMatches<S extends z.ZodType>(
  client: HodeiClient,
  service: ServiceName,
  path: string,
  item: S,
  text: string,
): Promise<{ items: z.infer<S>[]; total: number }> {
  const digits = text.replaceAll('-', '').length;
  if (!ID_PREFIX.test(text) || text.length < MIN_PREFIX || digits === 0 || digits > 32) return { items: [], total: 0 };
  const { items, total } = await client.list(service, path, item, { id_prefix: text, limit: SHOWN + 1 });
  return { items, total: total ?? items.length };
}

/** Too short for an id prefix, and made only of what one holds (`db`, `add`): a name, if anything. */
const shortHex = (text: string) => text.length < MIN_PREFIX && !/[^0-9a-f-]/.test(text);

/** What the user typed, lower case; refused when it is too short for an id prefix and `kind` has no names. */
export function checkPrefix(input: string, kind: string, named = true): string {
  const text = input.trim().toLowerCase();
  if (UUID.test(text)) return text;
  if (!named && shortHex(text)) throw new CliError(`"${input}" is too short: give at least ${MIN_PREFIX} characters of the ${kind} id`);
  return text;
}

/**
 * Pick the one candidate `input` names: a full id, a unique id prefix, or (when given) an exact
 * name. A name several candidates share means the newest, or, with `sharedName: 'refuse'` (where
 * acting on the wrong one is harmful), an error listing them.
 */
export function pick(
  input: string,
  kind: string,
  candidates: Candidate[],
  sharedName: 'newest' | 'refuse' = 'newest',
  /** How many ids begin with the input, when the candidates are only the first of them (idMatches). */
  idMatchCount?: number,
): Candidate {
  const text = input.trim().toLowerCase();
  const exact = candidates.find((c) => c.id.toLowerCase() === text);
  if (exact) return exact;
  let matches = text.length >= MIN_PREFIX ? candidates.filter((c) => c.id.toLowerCase().startsWith(text)) : [];
  if (matches.length === 0) {
    matches = candidates.filter((c) => c.name && c.name === input.trim());
    matches.sort((a, b) => (b.created_at ?? '').localeCompare(a.created_at ?? ''));
    if (matches.length > 1 && sharedName === 'newest') return matches[0] as Candidate;
    if (matches.length > 1)
      throw new CliError(`"${input}" is the name of ${matches.length} ${plural(kind)}; give the id (or a unique prefix) of the one you mean`, 1, listed(matches, matches.length));
  }
  if (matches.length === 1) return matches[0] as Candidate;
  if (matches.length === 0 && shortHex(text)) throw new CliError(`no ${kind} is named "${input}", and an id prefix needs at least ${MIN_PREFIX} characters`);
  if (matches.length === 0) throw new CliError(`no ${kind} matches "${input}"`);
  const count = Math.max(matches.length, idMatchCount ?? 0);
  throw new CliError(`"${input}" is ambiguous: it matches ${count} ${plural(kind)}; give more characters`, 1, listed(matches, count));
}

/** 'job' → 'jobs', 'execution or job' → 'executions or jobs'. */
const plural = (kind: string) => kind.replace(/\w+/g, (w) => (w === 'or' ? w : `${w}s`));

function listed(matches: Candidate[], count: number): string[] {
  const shown = matches.slice(0, SHOWN).map((c) => `${c.id}  ${c.kind.padEnd(9)}  ${c.label}`);
  if (count > SHOWN) shown.push(`… and ${count - SHOWN} more`);
  return shown;
}
