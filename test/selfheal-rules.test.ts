import * as hdr from 'hdr-histogram-js';
import { describe, expect, it, vi } from 'vitest';
import { AuditTrail } from '../src/selfheal/audit-trail.js';
import type { HookConfig, SelfHealEvent } from '../src/selfheal/hook-types.js';
import { LatencyWindows, type WindowStats } from '../src/selfheal/latency-windows.js';
import { RuleState } from '../src/selfheal/rule-state.js';
import { type RuleConfig, selfhealSchema } from '../src/selfheal/selfheal-config.js';
import { type BackendSwitch, Watcher } from '../src/selfheal/watcher.js';
import { ManualClock } from './helpers/manual-clock.js';

/** A rule with the documented defaults filled in. */
function rule(input: Record<string, unknown>): RuleConfig {
  return selfhealSchema.parse({ rules: [{ name: 'r', metric: 'redis', action: 'reroute', ...input }] })
    .rules[0]!;
}

/** A closed window holding `count` samples of `ms`. */
function windowOf(ms: number, count = 20): WindowStats {
  const windows = new LatencyWindows();
  for (let i = 0; i < count; i++) windows.record('redis', ms);
  return windows.rotate().get('redis')!;
}

const FAIL = () => windowOf(100);
const OK = () => windowOf(5);

/** Feeds windows one per second from t = 0; returns every decision's kind per window. */
function run(state: RuleState, windows: WindowStats[], start = 0): string[][] {
  return windows.map((w, i) => state.evaluate(w, start + i * 1000).map((d) => d.kind));
}

describe('rule state (injected time, no sleeping)', () => {
  it('fires after forWindows consecutive breaches; FAIL, FAIL, OK, FAIL does not fire', () => {
    const state = new RuleState(rule({ aboveMs: 50, forWindows: 3 }));
    expect(run(state, [FAIL(), FAIL(), OK(), FAIL()])).toEqual([['breach'], ['breach'], [], ['breach']]);
    const fresh = new RuleState(rule({ aboveMs: 50, forWindows: 3 }));
    expect(run(fresh, [FAIL(), FAIL(), FAIL()])).toEqual([['breach'], ['breach'], ['breach', 'fire']]);
  });

  it('a window below minSamples neither counts nor resets', () => {
    const state = new RuleState(rule({ aboveMs: 50, forWindows: 3, minSamples: 10 }));
    const sparse = windowOf(1, 3);
    expect(run(state, [FAIL(), sparse, FAIL(), windowOf(500, 9), FAIL()])).toEqual([
      ['breach'],
      [],
      ['breach'],
      [],
      ['breach', 'fire'],
    ]);
    expect(state.evaluate(undefined, 10_000)).toEqual([]);
  });

  it('hysteresis: back only after recoverForWindows windows below recoverBelowMs', () => {
    const state = new RuleState(
      rule({ aboveMs: 50, forWindows: 1, recoverBelowMs: 20, recoverForWindows: 3, cooldownMs: 0 }),
    );
    expect(state.evaluate(FAIL(), 0).map((d) => d.kind)).toEqual(['breach', 'fire']);
    expect(state.rerouting).toBe(true);
    // 30 ms is healthy for a breach but not for recovery: it starts the recovery count again.
    const recovering = run(state, [OK(), OK(), windowOf(30), OK(), OK(), windowOf(1, 1)], 1000);
    expect(recovering).toEqual([[], [], [], [], [], ['recover']]);
    expect(state.rerouting).toBe(false);
    const recovered = state.snapshot(7000);
    expect(recovered).toMatchObject({ engaged: false, healthyWindows: 0, breaches: 0 });
  });

  it('cooldown holds a second action back, then lets it through', () => {
    const state = new RuleState(
      rule({
        action: 'notify',
        hook: { url: 'http://127.0.0.1:9/' },
        aboveMs: 50,
        forWindows: 1,
        cooldownMs: 5000,
      }),
    );
    expect(state.evaluate(FAIL(), 0).map((d) => d.kind)).toEqual(['breach', 'fire']);
    expect(state.evaluate(FAIL(), 1000)).toContainEqual(
      expect.objectContaining({ kind: 'suppressed', reason: 'cooldown' }),
    );
    expect(state.evaluate(FAIL(), 4999).map((d) => d.kind)).toEqual(['breach', 'suppressed']);
    expect(state.evaluate(FAIL(), 5000).map((d) => d.kind)).toEqual(['breach', 'fire']);
  });

  it('caps actions per hour', () => {
    const state = new RuleState(
      rule({
        action: 'notify',
        hook: { url: 'http://127.0.0.1:9/' },
        aboveMs: 50,
        forWindows: 1,
        cooldownMs: 0,
        maxActionsPerHour: 2,
      }),
    );
    const kinds = [0, 1, 2, 3].map((i) => state.evaluate(FAIL(), i * 1000).at(-1)!);
    expect(kinds.map((d) => d.kind)).toEqual(['fire', 'fire', 'suppressed', 'suppressed']);
    expect(kinds[2]).toMatchObject({ reason: 'hourly-cap' });
    // An hour after the first action there is room again.
    expect(state.evaluate(FAIL(), 3_600_000).at(-1)!.kind).toBe('fire');
  });

  it('dry-run decides the same but never reroutes', () => {
    const state = new RuleState(rule({ aboveMs: 50, forWindows: 1, dryRun: true }));
    expect(state.evaluate(FAIL(), 0)).toContainEqual(expect.objectContaining({ kind: 'fire', dryRun: true }));
    expect(state.rerouting).toBe(false);
    expect(state.snapshot(0).engaged).toBe(true);
  });
});

describe('latency windows', () => {
  it("computes a closed window's quantile once, however often it is asked for (a scrape is cheap)", () => {
    const windows = new LatencyWindows();
    for (let i = 0; i < 20; i++) windows.record('redis', i + 1);
    windows.rotate();
    // The class every histogram is made of: a spy that counts and calls through, not a stand-in.
    let proto = Object.getPrototypeOf(hdr.build({ useWebAssembly: false, bitBucketSize: 'packed' }));
    while (!Object.hasOwn(proto, 'getValueAtPercentile')) proto = Object.getPrototypeOf(proto);
    const walks = vi.spyOn(proto, 'getValueAtPercentile');
    try {
      for (let i = 0; i < 100; i++)
        expect(windows.lastWindow().get('redis')!.quantile(0.99)).toBeCloseTo(20, 1);
      expect(walks).toHaveBeenCalledTimes(1);
      // The next window is computed afresh.
      windows.record('redis', 40);
      expect(windows.rotate().get('redis')!.quantile(0.99)).toBeCloseTo(40, 1);
      expect(walks).toHaveBeenCalledTimes(2);
    } finally {
      walks.mockRestore();
    }
  });

  it.each(['packed', 'flat'] as const)(
    'quantiles match the exact quantiles of random data within the histogram error bound (%s buckets)',
    (buckets) => {
      const windows = new LatencyWindows(buckets);
      const samples: number[] = [];
      let seed = 42;
      const random = () => {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      for (let i = 0; i < 50_000; i++) {
        // Long-tailed, like latencies: mostly ~1 ms, some up to seconds.
        const ms = 0.05 + (-Math.log(1 - random()) * 2) ** 2;
        samples.push(ms);
        windows.record('chunk', ms);
      }
      const stats = windows.rotate().get('chunk')!;
      expect(stats.count).toBe(50_000);
      const sorted = [...samples].sort((a, b) => a - b);
      for (const q of [0.5, 0.9, 0.99, 0.999]) {
        const exact = sorted[Math.ceil(q * sorted.length) - 1]!;
        // 3 significant digits: 0.1 % relative, plus the 1 µs recording resolution.
        expect(Math.abs(stats.quantile(q) - exact)).toBeLessThanOrEqual(exact * 0.001 + 0.001);
      }
      // The next window starts empty; lifetime counts go on.
      expect(windows.rotate().get('chunk')!.count).toBe(0);
      expect(windows.lifetime('chunk').count).toBe(50_000);
    },
  );
});

describe('watcher (injected clock)', () => {
  function setup(rules: Record<string, unknown>[], probe?: () => Promise<void>) {
    const clock = new ManualClock();
    const windows = new LatencyWindows();
    const config = selfhealSchema.parse({ intervalMs: 1000, probeTimeoutMs: 200, rules });
    const switches: string[] = [];
    const backend: BackendSwitch & { backend: 'primary' | 'standby' } = {
      backend: 'primary',
      use(to) {
        this.backend = to;
        switches.push(to);
      },
    };
    const hooks: Array<{ hook: HookConfig; event: SelfHealEvent }> = [];
    const audit = new AuditTrail(100, [], () => {});
    const watcher = new Watcher({
      config,
      windows,
      instance: 'test-1',
      clock,
      probes: probe ? [{ metric: 'redis', probe }] : [],
      backend,
      runHook: async (hook, event) => {
        hooks.push({ hook, event });
        return [{ kind: 'webhook', ok: true, detail: 'HTTP 200 after 1 attempt', durationMs: 1 }];
      },
      audit,
    });
    return { clock, windows, watcher, backend, switches, hooks, audit };
  }

  it('reroutes after the breaches, returns after the hysteresis, and audits every step', async () => {
    const { clock, windows, watcher, backend, switches } = setup([
      {
        name: 'redis-slow',
        metric: 'redis',
        action: 'reroute',
        aboveMs: 50,
        forWindows: 2,
        recoverBelowMs: 20,
        recoverForWindows: 2,
      },
    ]);
    const window = async (ms: number) => {
      for (let i = 0; i < 20; i++) windows.record('redis', ms);
      clock.advance(1000);
      await watcher.tick();
    };
    await window(120);
    expect(backend.backend).toBe('primary');
    await window(120);
    expect(backend.backend).toBe('standby');
    await window(2);
    await window(2);
    expect(switches).toEqual(['standby', 'primary']);
    const status = await watcher.status();
    expect(status.backend).toBe('primary');
    expect(status.events.map((e) => e.kind)).toEqual([
      'breach',
      'breach',
      'fired',
      'backend',
      'recovered',
      'backend',
    ]);
    expect(status.events[2]!.detail).toBe(
      'reroute: new pipes go to the standby Redis after 2 windows, p99 120 ms',
    );
    expect(status.rules[0]).toMatchObject({ name: 'redis-slow', samples: 20, engaged: false });
  });

  it('fires a rollback hook with the event, and counts a probe that times out as probeTimeoutMs', async () => {
    const { clock, watcher, hooks } = setup(
      [
        {
          name: 'slow',
          metric: 'redis',
          action: 'rollback',
          aboveMs: 150,
          forWindows: 1,
          minSamples: 1,
          hook: { url: 'http://127.0.0.1:9/hook' },
        },
      ],
      () => new Promise(() => {}),
    );
    // A probe that never answers counts, at 200 ms, as that slow...
    watcher.probe();
    clock.advance(200);
    await new Promise((resolve) => setImmediate(resolve));
    // ...in the window the next tick judges.
    clock.advance(800);
    await watcher.tick();
    await watcher.settled();
    expect(hooks).toHaveLength(1);
    expect(hooks[0]!.event).toMatchObject({
      rule: 'slow',
      metric: 'redis',
      action: 'rollback',
      thresholdMs: 150,
      windows: 1,
      instance: 'test-1',
    });
    expect(hooks[0]!.event.valueMs).toBeCloseTo(200, 0);
    const events = (await watcher.status()).events;
    expect(events.at(-1)).toMatchObject({ kind: 'hook', detail: 'webhook ok: HTTP 200 after 1 attempt' });
  });
});

describe('watcher: a Redis that stops answering', () => {
  it('still fills its windows (with the oldest unanswered probe age) and fires', async () => {
    const clock = new ManualClock();
    const windows = new LatencyWindows();
    const switches: string[] = [];
    const backend = {
      backend: 'primary' as 'primary' | 'standby',
      use(to: 'primary' | 'standby') {
        this.backend = to;
        switches.push(to);
      },
    };
    const watcher = new Watcher({
      config: selfhealSchema.parse({
        intervalMs: 1000,
        probeTimeoutMs: 1000,
        rules: [{ name: 'hung', metric: 'redis', action: 'reroute', aboveMs: 50 }],
      }),
      windows,
      instance: 't',
      clock,
      probes: [{ metric: 'redis', probe: () => new Promise(() => {}) }],
      backend,
      runHook: async () => [],
      audit: new AuditTrail(10, [], () => {}),
    });
    watcher.start();
    for (let i = 0; i < 80; i++) {
      clock.advance(50);
      await new Promise((resolve) => setImmediate(resolve));
    }
    watcher.stop();
    // Defaults: minSamples 10, forWindows 3; four seconds of silence are enough.
    expect(switches).toEqual(['standby']);
  });
});

describe('selfheal config', () => {
  it('documents its defaults and refuses what cannot work', () => {
    const parsed = selfhealSchema.parse({
      rules: [{ name: 'a', metric: 'ttfb', action: 'notify', aboveMs: 500, hook: { command: ['true'] } }],
    });
    expect(parsed).toMatchObject({ intervalMs: 1000, probeTimeoutMs: 1000, auditSize: 200 });
    expect(parsed.rules[0]).toMatchObject({
      quantile: 0.99,
      forWindows: 3,
      minSamples: 10,
      recoverForWindows: 5,
      cooldownMs: 30_000,
      maxActionsPerHour: 6,
      dryRun: false,
      hook: { timeoutMs: 5000 },
    });
    expect(() =>
      selfhealSchema.parse({ rules: [{ name: 'a', metric: 'ttfb', action: 'rollback', aboveMs: 5 }] }),
    ).toThrow(/needs a hook/);
  });
});
