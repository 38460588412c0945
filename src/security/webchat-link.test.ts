import { describe, expect, it } from 'vitest';
import { isWellFormedWebchatToken, newWebchatToken, webchatTokenHash } from './webchat-link.ts';

describe('web chat link tokens', () => {
  it('are random, well formed, and hashed under the secret', () => {
    const token = newWebchatToken();
    expect(isWellFormedWebchatToken(token)).toBe(true);
    expect(newWebchatToken()).not.toBe(token);
    expect(webchatTokenHash('secret-a', token)).toBe(webchatTokenHash('secret-a', token));
    expect(webchatTokenHash('secret-a', token)).not.toBe(webchatTokenHash('secret-b', token));
    expect(isWellFormedWebchatToken(token + '.')).toBe(false);
  });
});
