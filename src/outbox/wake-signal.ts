/**
 * How a queue worker waits for work: `sleep(ms)` returns after `ms`, or at once when `wake()` is called during it
 * or was called since the last sleep. Remembering a wake that arrives while the worker is busy (a NOTIFY during a
 * claim) means it is never lost. Used by the outbox relay and the recording jobs.
 */
export interface WakeSignal {
  wake(): void;
  sleep(ms: number): Promise<void>;
}

export function createWakeSignal(): WakeSignal {
  let wakeRequested = false;
  let wakeSleeper: (() => void) | null = null;
  return {
    wake() {
      wakeRequested = true;
      wakeSleeper?.();
    },
    async sleep(ms) {
      if (!wakeRequested) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, ms);
          function done() {
            clearTimeout(timer);
            wakeSleeper = null;
            resolve();
          }
          wakeSleeper = done;
        });
      }
      wakeRequested = false;
    },
  };
}
