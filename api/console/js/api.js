// The console's one way to the API: the session (token, role, permissions), calls that turn
// problem+json answers into errors with the problem attached, images as blob URLs (an <img> cannot
// send the Authorization header), and the live WebSocket opened with a single-use ticket.

const SESSION_KEY = "mugpos.session";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function session() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (stored && stored.expires_at > Date.now()) return stored;
  } catch (_) {
    /* a damaged entry is no session */
  }
  return null;
}

/** Called with the new session (or null) whenever it changes. */
export function onSessionChange(fn) {
  listeners.add(fn);
  watchExpiry(session()); // a reloaded tab keeps its session, and its end
}

let expiry = null;

function setSession(value) {
  if (!value && !sessionStorage.getItem(SESSION_KEY)) return; // already signed out (many 401s)
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
  watchExpiry(value);
  for (const fn of listeners) fn(value);
}

/** Back to the sign-in when the token runs out, not at the next refused call. */
function watchExpiry(value) {
  clearTimeout(expiry);
  if (value) expiry = setTimeout(signOut, Math.max(0, value.expires_at - Date.now()));
}

/** Whether the signed-in role holds `permission` (the API decides anyway). */
export function can(permission) {
  const current = session();
  return Boolean(current && current.permissions.includes(permission));
}

export async function signIn(username, password) {
  const form = new URLSearchParams({ username, password });
  const reply = await fetch("/api/v1/auth/token", { method: "POST", body: form });
  const body = await readBody(reply);
  if (!reply.ok) throw new ApiError(reply.status, body);
  setSession({
    username,
    token: body.access_token,
    role: body.role,
    permissions: body.permissions,
    expires_at: Date.now() + body.expires_in * 1000,
  });
}

export function signOut() {
  setSession(null);
}

async function readBody(reply) {
  const type = reply.headers.get("content-type") || "";
  if (reply.status === 204) return null;
  if (type.includes("json")) return reply.json();
  return reply.text();
}

function headers(extra = {}) {
  const current = session();
  return current ? { Authorization: `Bearer ${current.token}`, ...extra } : extra;
}

/** fetch with the session: `json` sends a JSON body; the parsed answer or an ApiError. */
export async function api(path, { method = "GET", json, body, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const reply = await fetch(url, init);
  const answer = await readBody(reply);
  if (reply.status === 401) signOut();
  if (!reply.ok) throw new ApiError(reply.status, typeof answer === "object" ? answer : null);
  return answer;
}

/** An object URL of a result's image (revoke it when done), or null when there is none. */
export async function imageUrl(requestId, { annotated = false } = {}) {
  const path = `/api/v1/analyze/${encodeURIComponent(requestId)}/image`;
  const reply = await fetch(`${path}${annotated ? "?annotated=true" : ""}`, { headers: headers() });
  if (!reply.ok) return null;
  return URL.createObjectURL(await reply.blob());
}

/** Upload one file with progress (fetch has no upload progress): resolves to the answer. */
export function upload(file, { sourceId, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const url = new URL("/api/v1/analyze", location.origin);
    request.open("POST", url);
    for (const [key, value] of Object.entries(headers())) request.setRequestHeader(key, value);
    request.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    request.onload = () => {
      let answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch (_) {
        /* not JSON: reported by status below */
      }
      if (request.status === 401) signOut();
      if (request.status >= 200 && request.status < 300) resolve(answer);
      else reject(new ApiError(request.status, answer));
    };
    request.onerror = () => reject(new Error("the upload did not reach the server"));
    const form = new FormData();
    form.append("image", file, file.name);
    if (sourceId) form.append("source_id", sourceId);
    request.send(form);
  });
}

/**
 * The live feed: opens WS /ws/control-plane with a ticket, at most one result per source per
 * `throttleMs` (the server keeps the latest), and reopens with backoff when it drops.
 * Returns a function that closes it for good.
 */
export function live({ sourceId, throttleMs = 1000, onEvent, onState }) {
  let socket = null;
  let closed = false;
  let delay = 500;
  let retry = null;
  const again = () => {
    retry = setTimeout(open, (delay = Math.min(delay * 2, 10000)));
  };
  async function open() {
    if (closed) return;
    onState?.("connecting");
    try {
      const { ticket } = await api("/api/v1/ws-ticket", { method: "POST" });
      if (closed) return; // closed while the ticket was on its way
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const url = new URL(`${scheme}://${location.host}/ws/control-plane`);
      url.searchParams.set("ticket", ticket);
      url.searchParams.set("latest_per_source_ms", String(throttleMs));
      if (sourceId) url.searchParams.set("source_id", sourceId);
      socket = new WebSocket(url);
    } catch (err) {
      onState?.("offline");
      if (err.status === 401) return; // signed out: the app shows the sign-in
      again();
      return;
    }
    socket.onopen = () => {
      delay = 500;
      onState?.("live");
    };
    socket.onmessage = (message) => onEvent(JSON.parse(message.data));
    socket.onclose = (event) => {
      if (closed) return;
      onState?.("offline");
      if (event.code === 4401 || event.code === 4403) return;
      again();
    };
  }
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    socket?.close();
  };
}
