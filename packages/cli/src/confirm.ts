// A question hodei asks at a terminal before it does something that cannot be undone.
import { createInterface } from 'node:readline';
import { CliError } from './errors.js';
import { stderr } from './output.js';

/** Returns when the answer is y or yes; anything else (Enter, Ctrl-D) is a no, exit 1; Ctrl-C, exit 130. */
export async function confirm(question: string, declined: string): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: stderr });
  const answer = await new Promise<string | null>((resolve) => {
    rl.on('SIGINT', () => resolve(null)).on('close', () => resolve(''));
    rl.question(`${question} [y/N] `, resolve);
  });
  rl.close();
  if (answer === null) {
    stderr.write('\n');
    throw new CliError(`interrupted: ${declined}`, 130);
  }
  if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(declined);
}
