// Calls to the service's API with the operator's key. The key lives in this
// tab's sessionStorage only (never a URL, a cookie or local storage) and
// goes only in the Authorization header. Nothing here logs.

const KEY = 'whatsapp-sessions.apiKey';

/** The key this tab signed in with, or null. */
export function storedKey() {
  return sessionStorage.getItem(KEY);
}

/** Keeps key for this tab. */
export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

/** Forgets the key. */
export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** An error the API answered (status and code), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};

/** Sets what happens when the API refuses the key (401) on any call. */
export function whenUnauthorized(f) {
  onUnauthorized = f;
}

/** The Authorization header for key (the stored one by default). */
export function authHeader(key = storedKey()) {
  return { Authorization: `Bearer ${key}` };
}

/**
 * Calls the API: method and path, an optional JSON body. It resolves to the
 * Response when the status is 2xx, and otherwise throws an ApiError whose
 * message is the API's own sentence.
 */
export async function call(method, path, { body, key, signal } = {}) {
  const headers = authHeader(key);
  const init = { method, headers, cache: 'no-store', credentials: 'omit', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The service did not answer: is it running?');
  }
  if (res.ok) return res;
  let code = 'http_' + res.status;
  let message = `The service answered ${res.status} ${res.statusText}.`;
  try {
    const e = (await res.json()).error;
    if (e && e.message) {
      code = e.code;
      message = e.message;
    }
  } catch {
    // not a JSON error: keep the status line
  }
  const err = new ApiError(res.status, code, message);
  if (res.status === 401 && key === undefined) onUnauthorized(err);
  throw err;
}

/** Calls the API and decodes its JSON answer. */
export async function callJSON(method, path, opts) {
  const res = await call(method, path, opts);
  return res.json();
}

/** The API path of session id, with more path segments. */
export function sessionPath(id, ...rest) {
  return ['/api/whatsapp/session', encodeURIComponent(id), ...rest].join('/');
}

/** A senderId the API takes. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
