// `logs --grep`: one pattern, two engines. A followed log (-f) is matched here, in JavaScript; a past
// one is searched by the worker-manager, in PostgreSQL. They read some patterns differently, and
// silently: PostgreSQL takes `\b` for a backspace and `\B` for a backslash (`--grep '\bfoo'` found
// nothing in a past log and every `foo` live), JavaScript takes `[[:digit:]]` for a set of `[:digt`
// followed by `]`. Each engine is sent the pattern in its own words for these.
import { UsageError } from './errors.js';

/** JavaScript's sets for POSIX's named classes, ASCII (PostgreSQL's also hold other letters, digits and spaces). */
const CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z', digit: '0-9', alnum: 'a-zA-Z0-9', upper: 'A-Z', lower: 'a-z', space: '\\s', blank: ' \\t',
  xdigit: '0-9A-Fa-f', word: '\\w', punct: '!-\\/:-@\\[-`{-~', cntrl: '\\x00-\\x1f\\x7f', print: ' -~', graph: '!-~',
};

/** PostgreSQL's word-boundary escapes for JavaScript's (outside a bracket expression: inside, `\b` is a backspace in both). */
const BOUNDARY: Record<string, string> = { b: '\\y', B: '\\Y' };

/**
 * `pattern` with its escapes outside bracket expressions passed through `escape`, and its named classes
 * (`[:digit:]`, inside one) through `named`; everything else as it was.
 */
function rewrite(pattern: string, escape: (c: string) => string | undefined, named: (name: string) => string | undefined): string {
  let out = '';
  let inBracket = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[++i]!;
      out += (!inBracket && escape(next)) || c + next;
    } else if (!inBracket && c === '[') {
      inBracket = true;
      out += c;
      // a `]` first in the bracket (after a `^`) is one of its characters, not its end
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') out += pattern[++i];
    } else if (inBracket && c === '[' && pattern[i + 1] === ':') {
      const end = pattern.indexOf(':]', i + 2);
      const name = end < 0 ? undefined : pattern.slice(i + 2, end);
      const set = name === undefined ? undefined : named(name);
      if (set === undefined) out += c;
      else {
        out += set;
        i = end + 1;
      }
    } else {
      if (inBracket && c === ']') inBracket = false;
      out += c;
    }
  }
  return out;
}

/** The lines `pattern` selects, matched here (a followed log); a pattern JavaScript cannot read is a usage error. */
export function matcher(pattern: string | undefined): (line: string) => boolean {
  if (!pattern) return () => true;
  try {
    const re = new RegExp(rewrite(pattern, () => undefined, (name) => CLASSES[name]));
    return (l) => re.test(l);
  } catch (err) {
    throw new UsageError(`--grep: ${(err as Error).message}`);
  }
}

/** `pattern` as the worker-manager's search must be sent it to select the lines `matcher` does. */
export const serverPattern = (pattern: string): string => rewrite(pattern, (c) => BOUNDARY[c], (name) => `[:${name}:]`);
