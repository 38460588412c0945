/**
 * The two visit pages, served as self-contained HTML (no static directory, so no web root to leak media from).
 * They hold no patient data: everything arrives over the authenticated WebSocket and API. The coordinator's
 * page runs on the web app's session cookie (the WebSocket upgrade carries it; uploads add the CSRF token), so no
 * API token is ever put in a URL; the patient's join token comes in the URL fragment (#t=), which browsers never
 * send to a server, and the WebSocket takes it in its first message. No inline script or style: the pages are
 * served with a CSP of script-src 'self' and frame-ancestors 'none' (src/http/visits.ts).
 *
 * The coordinator's page records: both sides' audio mixed through WebAudio plus the local video, MediaRecorder
 * chunks every second, each uploaded with retries until it is stored, so a network drop delays chunks but loses
 * none, and chunks already sent are kept by the server if the tab closes.
 */
export function renderVisitPage(role: 'coordinator' | 'patient', options: { iceServers: unknown[] }): string {
  const iceServers = JSON.stringify(options.iceServers).replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Video visit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/visits/assets/visit.css">
</head><body data-role="${role}" data-ice-servers="${iceServers}">
<p id="notice"><strong>This visit is recorded</strong> (audio and video) and transcribed into your care record. Recording starts only after both of you agree.</p>
<button id="consent">I agree: join the recorded visit</button>
<p id="status">Not connected.</p>
<video id="local" autoplay playsinline muted></video><video id="remote" autoplay playsinline></video>
<script src="/visits/assets/visit.js"></script>
</body></html>`;
}

/** The pages' one script, served as a file so the CSP can forbid inline script. */
export const VISIT_PAGE_SCRIPT = String.raw`const CONFIG = { role: document.body.dataset.role, iceServers: JSON.parse(document.body.dataset.iceServers || '[]') };
const visitId = location.pathname.split('/')[2];
// The patient's single-use join token comes in the URL fragment; the coordinator is signed in with the web app's
// session cookie (never an API token in a URL), and sends the session's CSRF token on writes.
const fragment = new URLSearchParams(location.hash.slice(1));
const token = CONFIG.role === 'patient' ? fragment.get('t') : null;
let csrfToken = null;
const authHeaders = () => (CONFIG.role === 'coordinator' ? { 'x-csrf-token': csrfToken || '' } : { authorization: 'Bearer ' + token });
const state = window.visitState = { role: CONFIG.role, joined: false, peerConnected: false, recording: false, chunksRecorded: 0, chunksUploaded: 0, uploadFailures: 0, completed: null, error: null, log: [] };
const statusLine = (text) => { document.getElementById('status').textContent = text; state.log.push(text); };
let ws, pc, local, remote, recorder, nextIndex = 0;
const uploads = [];
const pendingCandidates = [];
const send = (message) => ws && ws.readyState === 1 && ws.send(JSON.stringify(message));

async function upload(index, blob) {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch('/api/visits/' + visitId + '/recording/chunks/' + index, {
        method: 'PUT', headers: { ...authHeaders(), 'content-type': 'video/webm' }, body: blob,
      });
      if (response.ok) { state.chunksUploaded++; return; }
      if (response.status < 500 && response.status !== 408 && response.status !== 429) { state.error = 'chunk ' + index + ' refused: ' + response.status; return; }
    } catch (error) { /* network drop: retry below */ }
    state.uploadFailures++;
    await new Promise((resolve) => setTimeout(resolve, Math.min(3000, 100 * 2 ** attempt)));
  }
}

function startRecording() {
  if (CONFIG.role !== 'coordinator' || state.recording || !remote) return;
  const audio = new AudioContext();
  const mix = audio.createMediaStreamDestination();
  audio.createMediaStreamSource(local).connect(mix);
  // Chrome only feeds a remote WebRTC stream into WebAudio once a media element plays it.
  const sink = new Audio(); sink.muted = true; sink.srcObject = remote; sink.play().catch(() => {});
  audio.createMediaStreamSource(remote).connect(mix);
  const stream = new MediaStream([...mix.stream.getAudioTracks(), ...local.getVideoTracks()]);
  recorder = new MediaRecorder(stream, { mimeType: 'video/webm;codecs=vp8,opus' });
  recorder.ondataavailable = (event) => {
    if (event.data.size === 0) return;
    const index = nextIndex++;
    state.chunksRecorded = nextIndex;
    uploads.push(upload(index, event.data));
  };
  recorder.start(1000);
  state.recording = true;
  statusLine('Recording.');
}

window.endVisit = async () => {
  if (recorder && recorder.state !== 'inactive') await new Promise((resolve) => { recorder.onstop = resolve; recorder.stop(); });
  await Promise.all(uploads);
  const response = await fetch('/api/visits/' + visitId + '/recording/complete', {
    method: 'POST', headers: { ...authHeaders(), 'content-type': 'application/json' }, body: JSON.stringify({ chunkCount: nextIndex }),
  });
  state.completed = { status: response.status, body: await response.json().catch(() => null) };
  send({ type: 'bye' });
  if (pc) pc.close();
  statusLine('Visit ended.');
  return state.completed;
};

async function onSignal(data) {
  if (data.description) {
    await pc.setRemoteDescription(data.description);
    for (const candidate of pendingCandidates.splice(0)) await pc.addIceCandidate(candidate);
    if (data.description.type === 'offer') {
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: 'signal', data: { description: pc.localDescription } });
    }
  } else if (data.candidate) {
    if (pc.remoteDescription) await pc.addIceCandidate(data.candidate); else pendingCandidates.push(data.candidate);
  }
}

async function join() {
  document.getElementById('consent').disabled = true;
  if (CONFIG.role === 'coordinator') {
    const session = await fetch('/api/session', { cache: 'no-store' });
    if (!session.ok) throw new Error('sign in to Switchboard in this browser first, then reopen this page');
    csrfToken = (await session.json()).csrfToken;
  }
  local = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: { width: 320, height: 240 } });
  document.getElementById('local').srcObject = local;
  pc = new RTCPeerConnection({ iceServers: CONFIG.iceServers });
  for (const track of local.getTracks()) pc.addTrack(track, local);
  pc.onicecandidate = (event) => event.candidate && send({ type: 'signal', data: { candidate: event.candidate } });
  pc.onconnectionstatechange = () => { state.peerConnected = pc.connectionState === 'connected'; statusLine('Connection: ' + pc.connectionState); };
  pc.ontrack = (event) => {
    remote = event.streams[0];
    document.getElementById('remote').srcObject = remote;
    if (event.track.kind === 'audio') startRecording();
  };
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/visits/' + visitId);
  ws.onopen = () => send(CONFIG.role === 'patient' ? { type: 'hello', role: 'patient', token } : { type: 'hello', role: 'coordinator' });
  ws.onclose = () => statusLine('Signaling closed.');
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'welcome') { state.joined = true; send({ type: 'consent' }); statusLine('Waiting for the other side to join and agree.'); }
    else if (message.type === 'error') { state.error = message.message; statusLine('Error: ' + message.message); }
    else if (message.type === 'ready' && CONFIG.role === 'coordinator') {
      await pc.setLocalDescription(await pc.createOffer());
      send({ type: 'signal', data: { description: pc.localDescription } });
    } else if (message.type === 'signal') await onSignal(message.data);
    else if (message.type === 'bye') { statusLine('The other side left.'); }
    else if (message.type === 'replaced') { statusLine('This visit was opened again elsewhere; this page is no longer connected.'); }
  };
}
document.getElementById('consent').addEventListener('click', () => join().catch((error) => { state.error = String(error); statusLine('Error: ' + error); }));
`;

export const VISIT_PAGE_STYLE = `body{font-family:system-ui,sans-serif;margin:1rem}video{width:45%;background:#222}#notice{background:#fff3cd;padding:.5rem;border:1px solid #e0c36b}`;

/** Same origin only, no inline script or style, never framed; camera and microphone streams are blob:/mediastream:. */
export const VISIT_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; media-src 'self' blob: mediastream:; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
