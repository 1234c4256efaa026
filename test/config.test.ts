import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/cli/load-config.js';
import { ConfigError, parseConfig } from '../src/config.js';

describe('config', () => {
  it('fills in the documented defaults', () => {
    expect(parseConfig({})).toEqual({
      server: {
        host: '0.0.0.0',
        port: 8080,
        shutdownGraceMs: 30_000,
        maxHeaderBytes: 16_384,
        headersTimeoutMs: 30_000,
        trustProxies: [],
        h2c: false,
      },
      auth: { mode: 'open', secrets: [], tokens: [], metricsPublic: false, maxTtlSeconds: 604_800 },
      broker: { objectShards: 0, resumeGraceMs: 30_000, socketBufferBytes: 16 * 1024 * 1024 },
      limits: {
        maxReceivers: 32,
        maxPathBytes: 1024,
        maxPipes: 10_000,
        maxWaiting: 10_000,
        waitTimeoutMs: 600_000,
        idleTimeoutMs: 120_000,
        perClient: { requestsPerSecond: 20, burst: 200, maxPipes: 500, maxWaiting: 400, maxTracked: 100_000 },
      },
      selfheal: { intervalMs: 1000, probeTimeoutMs: 1000, auditSize: 200, rules: [] },
      topics: {
        maxRecordBytes: 64 * 1024,
        maxBatchBytes: 1024 * 1024,
        maxBatchRecords: 10_000,
        idempotencyWindowMs: 24 * 3600_000,
        claimAfterMs: 30_000,
        maxWaitMs: 60_000,
        maxTopics: 10_000,
        retention: [
          { namespace: '', maxRecords: 100_000, maxBytes: 64 * 1024 * 1024, maxAgeMs: 7 * 24 * 3600_000 },
        ],
      },
    });
  });

  it('refuses a reroute rule without a standby, and a standby without a primary', () => {
    const reroute = {
      selfheal: { rules: [{ name: 'slow', metric: 'redis', aboveMs: 50, action: 'reroute' }] },
    };
    expect(() => parseConfig({ broker: { redis: 'redis://a' }, ...reroute })).toThrow(
      'selfheal.rules.0.action: reroute needs broker.standby (a standby Redis to send new pipes to)',
    );
    expect(
      parseConfig({ broker: { redis: 'redis://a', standby: 'redis://b' }, ...reroute }).selfheal.rules[0],
    ).toMatchObject({ name: 'slow', forWindows: 3, recoverForWindows: 5, cooldownMs: 30_000 });
    expect(() => parseConfig({ broker: { standby: 'redis://b' } })).toThrow(
      'broker.standby: a standby needs a primary Redis (redis or cluster)',
    );
    expect(() =>
      parseConfig({
        selfheal: {
          rules: [{ name: 'x', metric: 'nope', aboveMs: 1, action: 'notify', hook: { url: 'ftp://h' } }],
        },
      }),
    ).toThrow(/selfheal\.rules\.0\.metric: .*selfheal\.rules\.0\.hook\.url/);
  });

  it('takes a Redis URL or cluster seeds, not both', () => {
    expect(parseConfig({ broker: { redis: 'redis://r:6379' } }).broker.redis).toBe('redis://r:6379');
    expect(parseConfig({ broker: { cluster: ['a:7000', 'b:7001'] } }).broker.cluster).toEqual([
      'a:7000',
      'b:7001',
    ]);
    expect(() => parseConfig({ broker: { redis: 'http://x' } })).toThrow(
      'broker.redis: expected a redis:// or rediss:// URL',
    );
    expect(() => parseConfig({ broker: { cluster: ['nope'] } })).toThrow(
      'broker.cluster.0: expected host:port',
    );
    expect(() => parseConfig({ broker: { redis: 'redis://a', cluster: ['b:1'] } })).toThrow(
      'broker: give either redis or cluster, not both',
    );
  });

  it('h2c defaults off, --h2c turns it on, and it cannot be combined with tls', () => {
    expect(parseConfig({}).server.h2c).toBe(false);
    expect(loadConfig({ h2c: true }, {}).server.h2c).toBe(true);
    expect(() => parseConfig({ server: { h2c: true, tls: { cert: 'c.pem', key: 'k.pem' } } })).toThrow(
      /server\.h2c: h2c is cleartext HTTP\/2/,
    );
  });

  it('names every bad key', () => {
    expect(() => parseConfig({ limits: { maxReceivers: 0, waitTimeoutMs: 'soon' } })).toThrow(ConfigError);
    try {
      parseConfig({ limits: { maxReceivers: 0, waitTimeoutMs: 'soon' }, extra: 1, server: { prot: 1 } });
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toContain('limits.maxReceivers: Too small');
      expect(message).toContain('limits.waitTimeoutMs: Invalid input: expected number');
      expect(message).toContain('extra: unknown key');
      expect(message).toContain('server.prot: unknown key');
    }
  });

  it('loads a file, then the environment, then flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-config-'));
    const file = join(dir, 'c.json');
    writeFileSync(
      file,
      JSON.stringify({ server: { host: '10.0.0.1', port: 1000 }, broker: { windowBytes: 65536 } }),
    );
    expect(loadConfig({ config: file }, {}).server).toMatchObject({ host: '10.0.0.1', port: 1000 });
    expect(loadConfig({ config: file }, { PORT: '2000', HOST: '::1' }).server).toMatchObject({
      host: '::1',
      port: 2000,
    });
    const flagged = loadConfig(
      { config: file, port: '3000' },
      { PORT: '2000', EDGEPIPE_CONFIG: '/nonexistent' },
    );
    expect(flagged.server.port).toBe(3000);
    expect(flagged.broker.windowBytes).toBe(65536);
    expect(loadConfig({}, { EDGEPIPE_CONFIG: file }).broker.windowBytes).toBe(65536);
  });

  it('reports unreadable and malformed files clearly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgepipe-config-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ nope');
    expect(() => loadConfig({ config: bad }, {})).toThrow(/is not valid JSON/);
    writeFileSync(bad, '[1]');
    expect(() => loadConfig({ config: bad }, {})).toThrow(/must hold a JSON object/);
    expect(() => loadConfig({ config: join(dir, 'missing.json') }, {})).toThrow(/cannot read config file/);
    expect(() => loadConfig({}, { PORT: '80x' })).toThrow(
      "server.port: PORT must be a port number, got '80x'",
    );
  });

  it('takes EDGEPIPE_CONFIG and --config as the JSON text itself too, the same on every runtime', () => {
    const text = ' {"limits":{"maxReceivers":3},"broker":{"redis":"redis://from-text:6379"}}';
    expect(loadConfig({}, { EDGEPIPE_CONFIG: text }).limits.maxReceivers).toBe(3);
    expect(loadConfig({ config: text }, {}).limits.maxReceivers).toBe(3);
    // The environment still beats the config, as with a file.
    expect(loadConfig({}, { EDGEPIPE_CONFIG: text, REDIS_URL: 'redis://env:6379' }).broker.redis).toBe(
      'redis://env:6379',
    );
    expect(() => loadConfig({}, { EDGEPIPE_CONFIG: '{"limits":' })).toThrow(
      /^the config JSON \(--config or EDGEPIPE_CONFIG\) is not valid JSON/,
    );
  });

  it('counts an empty variable or flag as not given (REDIS_URL= in a compose file)', () => {
    const config = loadConfig(
      { host: '', port: '', redis: '', config: '' },
      { REDIS_URL: '', HOST: '', PORT: '', EDGEPIPE_CONFIG: '', EDGEPIPE_SECRETS: '' },
    );
    expect(config.broker.redis).toBeUndefined();
    expect(config.server).toMatchObject({ host: '0.0.0.0', port: 8080 });
  });
});
