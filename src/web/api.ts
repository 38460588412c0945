/** fetch for the same-origin API: the session cookie travels by itself; writes carry the CSRF token. */
let csrfToken = '';

export function setCsrfToken(token: string): void {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && path !== '/api/session' && path !== '/api/session/login') window.dispatchEvent(new Event('switchboard:signed-out'));
    throw new ApiError(response.status, json?.code ?? 'error', json?.message ?? response.statusText);
  }
  return json as T;
}

/** Whether a route exists on this server (another branch's API may not be deployed): 404 "no route" means no. */
export async function routeExists(method: string, path: string, body?: unknown): Promise<boolean> {
  try {
    await api(method, path, body);
    return true;
  } catch (error) {
    return !(error instanceof ApiError && error.status === 404 && /no route/.test(error.message));
  }
}
