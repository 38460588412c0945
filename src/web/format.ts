export const CHANNEL_LABELS: Record<string, string> = {
  sms: 'SMS',
  messenger: 'Messenger',
  whatsapp: 'WhatsApp',
  webchat: 'Web chat',
  email: 'Email',
  voice: 'Phone',
};

/** Short glyphs for channel icons; the label is always next to them for screen readers. */
export const CHANNEL_ICONS: Record<string, string> = {
  sms: '✉',
  messenger: 'ⓜ',
  whatsapp: 'Ⓦ',
  webchat: '⌨',
  email: '@',
  voice: '☎',
};

export const channelLabel = (channel: string | null | undefined): string => (channel ? (CHANNEL_LABELS[channel] ?? channel) : 'unknown');

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function formatAgo(iso: string | null | undefined, now: number): string {
  if (!iso) return '';
  const ms = now - new Date(iso).getTime();
  if (ms < 60_000) return 'just now';
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export const formatTime = (iso: string): string => new Date(iso).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
