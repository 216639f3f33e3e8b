// Compiles spawner.c into dist/spawner, the spawner process the agent prefers (see src/spawn.ts),
// when a C compiler is found ($CC, else cc or gcc) and the binary is older than the source. Without
// a compiler, or when the compile fails, the agent uses spawner.pl: that is said, and is no error.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('./spawner.c', import.meta.url));
const target = fileURLToPath(new URL('./dist/spawner', import.meta.url));

if (existsSync(target) && statSync(target).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
if (process.platform !== 'linux') process.exit(0); // Linux only (pidfd, epoll): spawner.pl elsewhere
mkdirSync(fileURLToPath(new URL('./dist/', import.meta.url)), { recursive: true });
const partial = `${target}.${process.pid}`;
const compilers = process.env.CC ? [process.env.CC] : ['cc', 'gcc'];
for (const cc of compilers) {
  try {
    execFileSync(cc, ['-O2', '-Wall', '-o', partial, source], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(partial, target);
    process.exit(0);
  } catch (err) {
    rmSync(partial, { force: true });
    if (err.code === 'ENOENT') continue;
    process.stderr.write(`packages/worker: ${cc} could not compile spawner.c; the worker agent will use spawner.pl\n${err.stderr ?? err.message}\n`);
    process.exit(0);
  }
}
rmSync(target, { force: true });
process.stderr.write('packages/worker: no C compiler (cc); the worker agent will use spawner.pl (perl) to start jobs\n');
