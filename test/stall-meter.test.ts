import { describe, expect, it } from 'vitest';
import { AuditTrail } from '../src/selfheal/audit-trail.js';
import { type LatencySink, LatencyWindows } from '../src/selfheal/latency-windows.js';
import { selfhealSchema } from '../src/selfheal/selfheal-config.js';
import { StallMeter } from '../src/selfheal/stall-meter.js';
import { type BackendSwitch, Watcher } from '../src/selfheal/watcher.js';
import { ManualClock } from './helpers/manual-clock.js';

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Runs the clock forward `ms` in steps of `step`, letting promises run in between. */
async function run(clock: ManualClock, ms: number, step = 5): Promise<void> {
  for (let passed = 0; passed < ms; passed += step) {
    clock.advance(step);
    await settle();
  }
}

describe('stall meter (injected clock)', () => {
  it('sees nothing while its timer fires on time', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock);
    meter.start();
    await run(clock, 1000);
    expect(meter.blockedWithin(0, clock.now())).toBe(0);
    expect(meter.corrected(30)).toBe(30);
    meter.stop();
    expect(clock.pending).toBe(0);
  });

  it('takes a stall seen by its late timer out of a round trip that spans it', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock);
    meter.start();
    await run(clock, 100);
    // The loop is busy for 60 ms: the timer due at 105 fires at 160.
    clock.advance(60);
    expect(meter.blockedWithin(100, 160)).toBe(55);
    // A PING sent at 99 whose reply waited out the stall: 61 ms, of which 6 were not this process's.
    expect(meter.corrected(61)).toBe(6);
    // A round trip that ended before the stall keeps its time.
    expect(meter.blockedWithin(0, 100)).toBe(0);
    meter.stop();
  });

  it('takes a stall out even when the reply is handled before the overdue timer', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock);
    meter.start();
    await run(clock, 100);
    // After a stall, I/O callbacks may run before the timers: the meter's timer has not fired yet.
    clock.stall(60);
    expect(meter.corrected(61)).toBe(6);
    // When the timer then fires, the stall is not counted twice.
    clock.advance(0);
    expect(meter.blockedWithin(0, clock.now())).toBe(55);
    meter.stop();
  });

  it('leaves a slow reply slow: a stall the loop recovered from before the reply came is not taken out', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock);
    meter.start();
    await run(clock, 100);
    // A PING sent at 100 to a Redis 200 ms away; the loop is busy for 60 ms meanwhile, then free again.
    clock.advance(60);
    await run(clock, 140);
    expect(meter.blockedWithin(100, 300)).toBe(55);
    expect(meter.corrected(200)).toBe(200);
    meter.stop();
  });

  it('corrects only the metrics it is asked to, and never below zero', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock);
    const got: Array<[string, number]> = [];
    const sink: LatencySink = meter.correcting({ record: (metric, ms) => got.push([metric, ms]) }, ['redis']);
    meter.start();
    await run(clock, 50);
    clock.stall(100);
    sink.record('redis', 50);
    sink.record('ttfb', 50);
    expect(got).toEqual([
      ['redis', 0],
      ['ttfb', 50],
    ]);
    meter.stop();
  });

  it('keeps a bounded number of stalls, and only recent ones', async () => {
    const clock = new ManualClock();
    const meter = new StallMeter(clock, { maxStalls: 3, keepMs: 1000 });
    meter.start();
    for (let i = 0; i < 10; i++) {
      await run(clock, 20);
      clock.advance(20);
    }
    // Ten stalls of 15 ms: only the last three are kept.
    expect(meter.blockedWithin(0, clock.now())).toBe(45);
    await run(clock, 2000);
    clock.advance(20);
    // The old ones are dropped as new ones come.
    expect(meter.blockedWithin(0, clock.now())).toBe(15);
    meter.stop();
  });
});

/**
 * The scenario of issue 11, item 8, on an injected clock: the primary answers probes in 1 ms again, but the
 * instance stalls for 40 ms once per window (a busy machine, a garbage collection) and a probe's reply waits
 * it out. The window's p99 (its slowest probe) is then 41 ms, above `recoverBelowMs` (20): every window
 * started the return count over and the instance never came back.
 */
describe('watcher: the return to the primary under stalls', () => {
  function setup(withMeter: boolean) {
    const clock = new ManualClock();
    const windows = new LatencyWindows();
    const stalls = new StallMeter(clock);
    // As the Node runtime wires it: the Redis connection records its round trips through the meter.
    const redisSink: LatencySink = withMeter ? stalls.correcting(windows, ['redis']) : windows;
    let rtt = 1;
    const backend: BackendSwitch & { backend: 'primary' | 'standby' } = {
      backend: 'primary',
      use(to) {
        this.backend = to;
      },
    };
    const watcher = new Watcher({
      config: selfhealSchema.parse({
        intervalMs: 250,
        probeTimeoutMs: 500,
        rules: [
          {
            name: 'redis-slow',
            metric: 'redis',
            action: 'reroute',
            aboveMs: 50,
            forWindows: 3,
            minSamples: 1,
            recoverBelowMs: 20,
            recoverForWindows: 4,
            cooldownMs: 1000,
          },
        ],
      }),
      windows,
      instance: 't',
      clock,
      probes: [{ metric: 'redis', probe: async () => redisSink.record('redis', rtt) }],
      backend,
      runHook: async () => [],
      audit: new AuditTrail(100, [], () => {}),
      ...(withMeter && { stalls }),
    });
    /** `ms` of time; with `stallEvery`, a 40 ms stall at that period, a probe reply waiting it out. */
    const live = async (ms: number, stallEvery?: number) => {
      for (let passed = 0; passed < ms; passed += 5) {
        if (stallEvery && passed % stallEvery === 100) {
          clock.stall(40);
          redisSink.record('redis', rtt + 40);
          passed += 40;
        }
        clock.advance(5);
        await settle();
      }
    };
    return { watcher, backend, live, setRtt: (ms: number) => (rtt = ms) };
  }

  for (const withMeter of [true, false]) {
    it(withMeter ? 'returns within a few windows' : 'without the stall meter: never returns', async () => {
      const { watcher, backend, live, setRtt } = setup(withMeter);
      watcher.start();
      await live(1000, 250);
      expect(backend.backend).toBe('primary');
      // 200 ms round trips (100 ms injected each way): rerouted, stalls or not.
      setRtt(200);
      await live(2000, 250);
      expect(backend.backend).toBe('standby');
      setRtt(1);
      await live(10_000, 250);
      watcher.stop();
      expect(backend.backend).toBe(withMeter ? 'primary' : 'standby');
    });
  }

  it('still reroutes from a Redis that stops answering while the process runs normally', async () => {
    const clock = new ManualClock();
    const stalls = new StallMeter(clock);
    const switches: string[] = [];
    const backend: BackendSwitch & { backend: 'primary' | 'standby' } = {
      backend: 'primary',
      use(to) {
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
      windows: new LatencyWindows(),
      instance: 't',
      clock,
      probes: [{ metric: 'redis', probe: () => new Promise(() => {}) }],
      backend,
      runHook: async () => [],
      audit: new AuditTrail(10, [], () => {}),
      stalls,
    });
    watcher.start();
    await run(clock, 4000);
    watcher.stop();
    expect(switches).toEqual(['standby']);
  });
});
