// Talking to /api: JSON in and out; problems (RFC 9457) become ApiError with the title and detail.

import { sleep } from "./dom.js";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `The request failed (${status}).`);
    this.status = status;
    this.title = problem.title || "Something went wrong";
    this.detail = problem.detail || "";
    this.problems = Array.isArray(problem.problems) ? problem.problems : [];
    this.retryAfter = 0; // seconds, from a Retry-After header
  }

  /** A failure that may pass: no connection, too many requests, or the service briefly unwell. */
  get passing() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Send the visitor to sign in, coming back to where they are. */
export function signIn() {
  const back = encodeURIComponent(location.pathname + location.search);
  location.assign(`/.auth/login/aad?post_login_redirect_uri=${back}`);
}

async function request(method, path, body, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const init = { method, headers, credentials: "same-origin", signal: options.signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(`/api${path}`, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "No connection", detail: "The service could not be reached; check your connection and try again." });
  }
  const type = answer.headers.get("Content-Type") || "";
  // Signed out: Static Web Apps answers 401, or redirects API calls to its sign-in page.
  if (answer.status === 401 || (answer.redirected && answer.url.includes("/.auth/"))) {
    signIn();
    throw new ApiError(401, { title: "Sign-in required", detail: "Please sign in to go on." });
  }
  if (answer.status === 204) return null;
  if (!type.includes("json")) {
    const error = new ApiError(answer.status, { title: "Unexpected answer", detail: `The service answered ${answer.status} without data; try again.` });
    error.retryAfter = Number(answer.headers.get("Retry-After")) || 0;
    throw error;
  }
  const data = await answer.json();
  if (!answer.ok) {
    const error = new ApiError(answer.status, data && typeof data === "object" ? data : {});
    error.retryAfter = Number(answer.headers.get("Retry-After")) || 0;
    throw error;
  }
  return data;
}

export const api = {
  get: (path, options) => request("GET", path, undefined, options),
  post: (path, body = {}, options) => request("POST", path, body, options),
  delete: (path, options) => request("DELETE", path, undefined, options),
  poll,
};

/**
 * GET for a polling loop: a failure that may pass (no connection, 429, 5xx) is waited out and
 * tried again, backing off, before it is reported; anything else is reported at once.
 */
async function poll(path, { signal, tries = 6 } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request("GET", path, undefined, { signal });
    } catch (error) {
      if (!(error instanceof ApiError) || !error.passing || attempt >= tries) throw error;
      await sleep(Math.max(Math.min(1000 * 2 ** attempt, 16000), 1000 * error.retryAfter), signal);
    }
  }
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
