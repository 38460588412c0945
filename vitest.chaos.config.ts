import { defineConfig } from 'vitest/config';

// Chaos suites (`npm run chaos`): slow, start real infrastructure (a pg_auto_failover formation), so they stay out
// of `npm test`.
export default defineConfig({
  test: {
    include: ['src/chaos/**/*.chaos.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
