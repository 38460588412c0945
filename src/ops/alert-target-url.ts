/**
 * Alert targets are URLs an admin types in, fetched by our servers: without care that is a request forgery
 * (SSRF) aimed at loopback, the private network or a cloud metadata service. Refused unless
 * ALERT_TARGETS_ALLOW_PRIVATE=1: loopback, private (RFC 1918, CGNAT, IPv6 ULA), link-local (metadata lives at
 * 169.254.169.254) and other non-public ranges. Checked on the literal address at save time and on every resolved
 * address at send time (see `guardedLookup`), where the checked address is the one connected to.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const blocked = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT (also Alibaba's metadata address)
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local: AWS/GCP/Azure metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local (AWS metadata's IPv6 fd00:ec2::254)
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

/** IPv4-mapped and NAT64 IPv6 addresses reach the IPv4 address inside them. */
function embeddedIpv4(address: string): string | null {
  const mapped = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return null;
  const high = parseInt(hex[1]!, 16);
  const low = parseInt(hex[2]!, 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

export function isDisallowedAddress(address: string): boolean {
  const unbracketed = address.replace(/^\[|\]$/g, '');
  const family = isIP(unbracketed);
  if (family === 4) return blocked.check(unbracketed, 'ipv4');
  if (family === 6) {
    const inner = embeddedIpv4(unbracketed);
    return inner ? blocked.check(inner, 'ipv4') : blocked.check(unbracketed, 'ipv6');
  }
  return false;
}

/** Why `url` may not be an alert target, or null. Names are resolved only at send time. */
export function checkTargetUrl(url: string, allowPrivate: boolean): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return 'only http and https targets are allowed';
  if (allowPrivate) return null;
  const host = parsed.hostname.toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || host === 'metadata.google.internal') return `${host} is a local address; alert targets must be public (ALERT_TARGETS_ALLOW_PRIVATE=1 allows it)`;
  if (isDisallowedAddress(host)) return `${host} is a loopback, private or link-local address; alert targets must be public (ALERT_TARGETS_ALLOW_PRIVATE=1 allows it)`;
  return null;
}

/**
 * A `lookup` for http(s).request: resolves as usual, then refuses if any address is not public, so the socket
 * connects only to an address we checked (a DNS answer that changes between a check and the connect cannot slip by).
 */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '', 0);
    const refused = addresses.find((a) => isDisallowedAddress(a.address));
    if (refused) return callback(new Error(`${hostname} resolves to ${refused.address}, which is not a public address`), '', 0);
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    const first = addresses[0];
    if (!first) return callback(new Error(`${hostname} has no address`), '', 0);
    callback(null, first.address, first.family);
  });
};

/**
 * What a non-admin sees of a target URL: scheme, host and at most the first two path segments, never the
 * last one (Slack's and most webhooks' secret), nor query or credentials: https://hooks.slack.com/services/T000/…
 */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '…';
  }
  const segments = parsed.pathname.split('/').filter(Boolean);
  const shown = segments.slice(0, Math.min(2, segments.length - 1));
  const hidden = segments.length > shown.length || parsed.search !== '';
  return `${parsed.protocol}//${parsed.host}/${shown.map((s) => `${s}/`).join('')}${hidden ? '…' : ''}`;
}

/** Every URL inside free text (a stored delivery error) masked. */
export function maskUrlsIn(text: string): string {
  return text.replace(/\bhttps?:\/\/[^\s"'<>]+/gi, (url) => maskUrl(url));
}
