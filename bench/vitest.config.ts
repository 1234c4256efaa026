import { defineConfig } from 'vitest/config';

// `npm run bench:selfheal`: a measurement, not a test; it reuses the test harness (redis-server, the latency
// proxy, server processes), so it runs under vitest, outside `npm test`.
export default defineConfig({
  test: {
    include: ['bench/selfheal-timing.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
  },
});
