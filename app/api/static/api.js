/* The API calls, on the API's own routes:
     the domains served: GET /domains; is one address's mail received: GET /addresses/{address}
     list, read, mark, delete, raw, parts: /mailpit/{address}/api/v1/... (addressApi)
     a claimed address: POST /token once (the page keeps the token in sessionStorage).
   Every call is a fetch with JSON, no cookies, and a retried 429. */

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Thrown when a claimed address's routes answer 401: the page asks for the password.
export class LoginNeeded extends Error {}

// fetch with JSON and a bearer token; a 429 (the API's rate limit) is retried.
async function request(path, options = {}) {
  const headers = { Accept: 'application/json' };
  if (options.token) headers.Authorization = 'Bearer ' + options.token;
  let body;
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.json);
  }
  for (let attempt = 0; ; attempt += 1) {
    // credentials: 'omit': no cookies, and a 401 with WWW-Authenticate (Mailpit's
    // routes send Basic) comes back to us instead of opening the browser's dialog.
    const response = await fetch(path, {
      method: options.method || 'GET', headers, body, cache: 'no-store', credentials: 'omit',
    });
    if (response.status !== 429 || attempt >= 4) return response;
    await sleep(1000 * (attempt + 1));
  }
}

// The names of the domains this server receives mail for ([] when it cannot say).
export async function domainNames() {
  const response = await request('/domains');
  return response.ok ? (await response.json()).map((entry) => entry.domain) : [];
}

// {address, domain, served} for one address, or null when the server did not answer it.
export async function servedStatus(address) {
  const response = await request('/addresses/' + encodeURIComponent(address));
  return response.ok ? response.json() : null;
}

export function login(address, password) {
  return request('/token', { method: 'POST', json: { address, password } });
}

// One address's Mailpit routes (`base` + path) with its current token: a 401
// calls `unauthorized(token)` and throws LoginNeeded, another failure throws,
// and an answer calls `answered()`.
export function addressApi(base, currentToken, unauthorized, answered) {
  return async (path, options = {}) => {
    const response = await request(base + path, { ...options, token: currentToken() });
    if (response.status === 401) {
      unauthorized(currentToken());
      throw new LoginNeeded();
    }
    if (!response.ok) throw new Error('HTTP ' + response.status);
    answered();
    return response;
  };
}
