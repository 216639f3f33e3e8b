// A `--json` object that ends with a log's `lines`, written a line at a time: a long log is never
// held whole (`run --json` of a job printing a million lines held 650 MB).
import type { LogLine } from '@hodei/types';

/** `{...head, lines: [...]}` exactly as `JSON.stringify(value, null, 2)` prints it. */
export class JsonLines {
  private count = 0;

  constructor(head: Record<string, unknown>) {
    const fields = Object.entries(head).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v, null, 2).replace(/\n/g, '\n  ')},\n`);
    process.stdout.write(`{\n${fields.join('')}  "lines": [`);
  }

  add(l: LogLine): void {
    const item = JSON.stringify(l, null, 2).replace(/^/gm, '    ');
    process.stdout.write(`${this.count++ ? ',' : ''}\n${item}`);
  }

  end(): void {
    process.stdout.write(this.count ? '\n  ]\n}\n' : ']\n}\n');
  }
}
