import { describe, expect, it } from 'vitest';
import { AppendBudget } from '../src/broker/redis/append-budget.js';
import { isPending } from './broker-contract.js';

describe('append budget (appends in flight per instance)', () => {
  it('holds writers while the sum is over the bound and lets them go as appends complete', async () => {
    const budget = new AppendBudget(100);
    budget.take(60);
    await budget.room();
    budget.take(60);
    const waiting = [budget.room(), budget.room()];
    expect(await isPending(waiting[0]!)).toBe(true);
    budget.give(10);
    expect(await isPending(waiting[1]!)).toBe(true);
    budget.give(20);
    await Promise.all(waiting);
    budget.take(200);
    const again = budget.room();
    expect(await isPending(again)).toBe(true);
    budget.give(200);
    await again;
  });
});
