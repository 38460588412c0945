import { useState, type FormEvent } from 'react';
import { api, ApiError } from './api.ts';
import type { Me } from './types.ts';

export function Login({ onSignedIn }: { onSignedIn: (me: Me, csrfToken: string) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const result = await api<{ coordinator: Me; csrfToken: string }>('POST', '/api/session/login', { email, password });
      onSignedIn(result.coordinator, result.csrfToken);
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : 'Sign-in failed; try again.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login" id="main">
      <form onSubmit={(e) => void submit(e)} aria-labelledby="login-title">
        <h1 id="login-title">Sign in to Switchboard</h1>
        <label htmlFor="email">Email</label>
        <input id="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <label htmlFor="password">Password</label>
        <input id="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
