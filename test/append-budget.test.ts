import { describe, expect, it } from 'vitest';
import { AppendBudget } from '../src/broker/redis/append-budget.js';
import { isPending } from './broker-contract.js';

describe('append budget (upload bytes on their way to Redis, per instance)', () => {
  it('grants only what fits, first come first served, as bytes are given back', async () => {
    const budget = new AppendBudget(100);
    await budget.acquire(60);
    const first = budget.acquire(50);
    const second = budget.acquire(10);
    // The second would fit, but waits behind the first: no sender starves behind smaller ones.
    expect(await isPending(first)).toBe(true);
    expect(await isPending(second)).toBe(true);
    budget.give(5);
    expect(await isPending(first)).toBe(true);
    budget.give(5);
    await first;
    expect(budget.held).toBe(100);
    expect(await isPending(second)).toBe(true);
    budget.give(10);
    await second;
    expect(budget.held).toBe(100);
  });

  it('lets no group of waiters through at once past the bound (200 senders freed by one reply)', async () => {
    const budget = new AppendBudget(1000);
    await budget.acquire(1000);
    let granted = 0;
    const waiting = Array.from({ length: 200 }, () => budget.acquire(256).then(() => (granted += 1)));
    budget.give(1000);
    await Promise.resolve();
    expect(granted).toBe(3);
    expect(budget.held).toBe(768);
    for (let i = 0; i < 200; i++) budget.give(256);
    await Promise.all(waiting);
    expect(budget.held).toBe(0);
  });

  it('grants a request larger than the bound once nothing else is held', async () => {
    const budget = new AppendBudget(100);
    await budget.acquire(10);
    const big = budget.acquire(500);
    expect(await isPending(big)).toBe(true);
    budget.give(10);
    await big;
    expect(budget.held).toBe(500);
  });
});
