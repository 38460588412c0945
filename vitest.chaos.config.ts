import { defineConfig } from 'vitest/config';

// `npm run chaos`: the fault-injection suites (src/chaos/*.chaos.ts). Not part of `npm test`: they stop, crash
// and fail over PostgreSQL servers of their own (a private cluster, a pg_auto_failover formation) and run for
// minutes. One file at a time: each drives several processes.
export default defineConfig({
  test: {
    include: ['src/chaos/**/*.chaos.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 3 * 3_600_000,
    hookTimeout: 600_000,
  },
});
