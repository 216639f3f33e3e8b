import { describe, expect, it } from 'vitest';
import { RecentSet } from '../src/recent.js';

describe('RecentSet', () => {
  it('keeps the latest values added and forgets the oldest first; adding one again does not renew it', () => {
    const s = new RecentSet<string>(2);
    s.add('a');
    s.add('b');
    s.add('a');
    expect([s.has('a'), s.has('b')]).toEqual([true, true]);
    s.add('c');
    expect([s.has('a'), s.has('b'), s.has('c')]).toEqual([false, true, true]);
  });
});
