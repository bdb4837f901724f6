// REST client for the hub's /api. The bearer token lives in localStorage.

const TOKEN_KEY = "gadget.token";
const USER_KEY = "gadget.user";

/** The hub answered 401: the token is missing, expired or revoked. */
export class AuthError extends Error {}

/** Any other non-2xx answer; `status` is the HTTP status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  get user() {
    try {
      return JSON.parse(localStorage.getItem(USER_KEY) || "null");
    } catch {
      return null;
    }
  },
  save(token, user) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  },
};

/** The text of an error body: FastAPI's {"detail": ...}, else the status text. */
async function errorMessage(res) {
  try {
    const body = await res.json();
    const detail = body.detail ?? body.message ?? body.error;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return JSON.stringify(body);
  } catch {
    return `${res.status} ${res.statusText}`;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  let res;
  try {
    res = await fetch(new URL(`api/${path}`, document.baseURI), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `Cannot reach the hub (${err.message}).`);
  }
  if (res.status === 401) throw new AuthError(await errorMessage(res));
  if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

const enc = encodeURIComponent;

export const api = {
  login: (username, password) => request("POST", "auth/login", { username, password }),
  register: (username, password) => request("POST", "auth/register", { username, password }),
  me: () => request("GET", "auth/me"),
  projects: () => request("GET", "projects"),
  createProject: (name, description = "") => request("POST", "projects", { name, description }),
  drones: () => request("GET", "drones"),
  registerDrone: (name) => request("POST", "drones", { name }),
  deleteDrone: (id) => request("DELETE", `drones/${enc(id)}`),
  terminateDrone: (id) => request("POST", `drones/${enc(id)}/terminate`),
  chatSessions: (projectId) => request("GET", `chat-sessions?project=${enc(projectId)}`),
  turns: (chatSessionId) => request("GET", `chat-sessions/${enc(chatSessionId)}/turns`),
  turn: (turnId) => request("GET", `turns/${enc(turnId)}`),
};
