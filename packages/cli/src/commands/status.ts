// `hodei status`: is each service there, and healthy?
// Options and help only: what the command does is in actions/status.ts, loaded when it runs.
import { Command } from 'commander';
import { lazy } from '../lazy.js';

const load = () => import('../actions/status.js');

export function registerStatus(program: Command): void {
  program
    .command('status')
    .summary('health of the three services, and whether each takes the token')
    .action(lazy(load, 'status'));
}
