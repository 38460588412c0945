/**
 * Live updates from GET /api/live (Server-Sent Events). EventSource reconnects by itself and sends the last
 * event id it saw, so the server replays what was missed; a `reset` (too much missed) or a fresh `hello`
 * after a drop tells the app to reload its lists.
 */
export interface LiveEvent {
  type: 'activity' | 'gone' | 'refresh';
  patientId?: string;
  kind?: string;
}

type Listener = (event: LiveEvent) => void;

export function connectLive(onEvent: Listener, onStatus: (connected: boolean) => void): () => void {
  const source = new EventSource('/api/live');
  let everConnected = false;
  source.addEventListener('activity', (message) => {
    const data = JSON.parse((message as MessageEvent<string>).data) as { patientId: string; kind: string };
    onEvent({ type: 'activity', patientId: data.patientId, kind: data.kind });
  });
  source.addEventListener('gone', (message) => {
    const data = JSON.parse((message as MessageEvent<string>).data) as { patientId: string };
    onEvent({ type: 'gone', patientId: data.patientId });
  });
  source.addEventListener('hello', (message) => {
    const data = JSON.parse((message as MessageEvent<string>).data) as { resumed: boolean };
    onStatus(true);
    // A fresh (non-resumed) hello after we had been connected means the server could not replay: reload.
    if (everConnected && !data.resumed) onEvent({ type: 'refresh' });
    everConnected = true;
  });
  source.addEventListener('reset', () => onEvent({ type: 'refresh' }));
  source.addEventListener('error', () => onStatus(false));
  return () => source.close();
}
