// The patient's chat page. No build step, no libraries, no HTML parsing: every piece of text goes in with
// textContent. The link's token arrives in the URL fragment (never sent to a server or a Referer), is kept in
// sessionStorage for reloads, and travels as a Bearer header. The stream is read with fetch (EventSource cannot
// send headers) and resumed after the last sequence seen, so a reconnect neither loses nor repeats a message.
'use strict';

(function () {
  const fragment = location.hash.slice(1);
  if (fragment) {
    sessionStorage.setItem('switchboard-chat-token', fragment);
    history.replaceState(null, '', location.pathname);
  }
  const token = sessionStorage.getItem('switchboard-chat-token');
  const list = document.getElementById('messages');
  const state = document.getElementById('state');
  const form = document.getElementById('composer');
  const text = document.getElementById('text');
  const shown = new Map(); // message id or client id -> <li>
  const unread = new Set();
  let lastSeq = 0;
  let retryMs = 1000;
  let stopped = false;

  const headers = { authorization: 'Bearer ' + token };
  let renewTimer = null;

  // Links are short-lived: halfway to its expiry the page exchanges its link for a fresh one (the old one stops
  // working), so an open chat does not lapse. The server says when the link expires on each stream response.
  function scheduleRenewal(expiresAt) {
    const at = Date.parse(expiresAt || '');
    if (!Number.isFinite(at) || renewTimer) return;
    renewTimer = setTimeout(async () => {
      renewTimer = null;
      try {
        const response = await fetch('/chat/api/renew', { method: 'POST', headers, cache: 'no-store' });
        if (!response.ok) return;
        const fresh = await response.json();
        headers.authorization = 'Bearer ' + fresh.token;
        sessionStorage.setItem('switchboard-chat-token', fresh.token);
        scheduleRenewal(fresh.expiresAt);
      } catch (error) {
        // the stream's reconnect reports a link that no longer works
      }
    }, Math.max(0, (at - Date.now()) / 2));
  }
  const setState = (message) => { state.textContent = message; };

  function bubble(direction, body) {
    const item = document.createElement('li');
    item.className = direction;
    item.textContent = body;
    list.appendChild(item);
    item.scrollIntoView({ block: 'end' });
    return item;
  }

  function receipt(ids, status) {
    if (ids.length === 0) return;
    fetch('/chat/api/receipts', { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ messageIds: ids, status }) }).catch(() => {});
  }

  function onMessage(data) {
    const event = JSON.parse(data);
    if (event.seq <= lastSeq) return;
    lastSeq = event.seq;
    const pending = event.clientMessageId && shown.get(event.clientMessageId);
    if (pending) {
      pending.classList.remove('pending', 'failed');
      shown.set(event.id, pending);
      return;
    }
    if (shown.has(event.id)) return;
    shown.set(event.id, bubble(event.direction, event.body));
    if (event.direction === 'outbound') {
      if (document.visibilityState === 'visible') receipt([event.id], 'read');
      else {
        unread.add(event.id);
        receipt([event.id], 'delivered');
      }
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    receipt([...unread], 'read');
    unread.clear();
  });

  // Minimal text/event-stream parser (WHATWG HTML §9.2.6): fields id/event/data, blank line dispatches.
  async function readStream(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let dataLines = [];
    let eventName = 'message';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (dataLines.length > 0 && eventName === 'message') onMessage(dataLines.join('\n'));
          dataLines = [];
          eventName = 'message';
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') dataLines.push(value);
          else if (field === 'event') eventName = value;
        }
      }
    }
  }

  async function connect() {
    while (!stopped) {
      try {
        const response = await fetch('/chat/api/stream?after=' + lastSeq, { headers, cache: 'no-store' });
        if (response.status === 401 || response.status === 403) {
          stopped = true;
          setState('This chat link has expired, was withdrawn or is not valid. Ask your care team for a new one.');
          form.hidden = true;
          return;
        }
        if (!response.ok || !response.body) throw new Error('stream answered ' + response.status);
        setState('Connected');
        scheduleRenewal(response.headers.get('x-link-expires-at'));
        retryMs = 1000;
        await readStream(response.body);
      } catch (error) {
        // fall through to the reconnect below
      }
      if (stopped) return;
      setState('Reconnecting…');
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      retryMs = Math.min(retryMs * 2, 15000);
    }
  }

  async function send(clientMessageId, body, item) {
    for (let attempt = 0; attempt < 6; attempt++) {
      try {
        const response = await fetch('/chat/api/messages', {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ clientMessageId, body }),
        });
        if (response.ok) return;
        if (response.status < 500) break;
      } catch (error) {
        // network trouble: retry with the same id, which the server deduplicates
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt));
    }
    item.classList.add('failed');
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const body = text.value.trim();
    if (!body) return;
    text.value = '';
    const clientMessageId = crypto.randomUUID();
    const item = bubble('inbound', body);
    item.classList.add('pending');
    shown.set(clientMessageId, item);
    void send(clientMessageId, body, item);
  });

  if (!token) {
    setState('Open this page with the link your care team sent you.');
    form.hidden = true;
  } else {
    void connect();
  }
})();
