// `hodei events -f`: every execution status change, live.
// Options and help only: what the command does is in actions/events.ts, loaded when it runs.
import { Command } from 'commander';
import { lazy } from '../lazy.js';

const load = () => import('../actions/events.js');

export function registerEvents(program: Command): void {
  program
    .command('events')
    .summary('every execution status change, live')
    .option('-f, --follow', 'keep streaming (the default: this command only streams)')
    .action(lazy(load, 'events'));
}
