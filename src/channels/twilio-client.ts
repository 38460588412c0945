import twilio from 'twilio';

export interface TwilioClientOptions {
  accountSid: string;
  authToken: string;
  /** Origin (optionally with a path prefix) that replaces https://api.twilio.com, e.g. the loopback fake. */
  apiBase?: string;
  /** Per-request timeout; twilio-node's default is 30 s. */
  timeoutMs?: number;
}

type RequestOptions = Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0];

/**
 * Edge/region options only rewrite the hostname, so a custom httpClient is the one way to reach a
 * non-Twilio host (../shared/reference/providers.md §3). Page links (`next_page_uri`) come back as
 * api.twilio.com URLs too, and pass through here as well.
 */
class RebasingRequestClient extends twilio.RequestClient {
  readonly #apiBase: URL | undefined;

  constructor(apiBase: string | undefined, options: ConstructorParameters<typeof twilio.RequestClient>[0]) {
    super(options);
    this.#apiBase = apiBase === undefined ? undefined : new URL(apiBase);
  }

  override request<TData>(opts: RequestOptions & { data?: TData }) {
    return super.request<TData>(this.#apiBase ? { ...opts, uri: rebase(opts.uri, this.#apiBase) } : opts);
  }
}

function rebase(uri: string, apiBase: URL): string {
  const original = new URL(uri);
  const prefix = apiBase.pathname.replace(/\/+$/, '');
  return `${apiBase.origin}${prefix}${original.pathname}${original.search}`;
}

/** A twilio-node client that never retries by itself (the outbox owns retries). */
export function createTwilioClient({ accountSid, authToken, apiBase, timeoutMs }: TwilioClientOptions): twilio.Twilio {
  const httpClient = new RebasingRequestClient(apiBase, { autoRetry: false, ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }) });
  return twilio(accountSid, authToken, { httpClient, autoRetry: false });
}
