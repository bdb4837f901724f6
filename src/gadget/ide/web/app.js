// Entry point: sign-in, the hub connection, and the wiring between the sidebar,
// the chat session, the composer and the conversation view.

import { api, ApiError, AuthError, session as auth } from "./api.js";
import { $, h } from "./dom.js";
import { Logs, alert, banner, setStatus } from "./logs.js";
import { totalUsage, usageText } from "./panels.js";
import { TurnsView } from "./render.js";
import { syncMenus } from "./menus.js";
import { ChatSession } from "./session.js";
import { Sidebar } from "./sidebar.js";
import { HubSocket } from "./socket.js";

const THEME_KEY = "gadget.theme";
const PHONE = "(max-width: 760px)"; // style.css hides the sidebar behind ☰ below this width

let socket = null;
let everConnected = false;
let logs;
let sidebar;
let chat;
let view;

/* ---------- theme and layout ---------- */

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme) root.dataset.theme = theme;
  else delete root.dataset.theme;
  const dark = theme ? theme === "dark" : null;
  $("hljs-light").media = dark === null ? "(prefers-color-scheme: light)" : dark ? "not all" : "all";
  $("hljs-dark").media = dark === null ? "(prefers-color-scheme: dark)" : dark ? "all" : "not all";
}

function toggleTheme() {
  const current = document.documentElement.dataset.theme
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const next = current === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
}

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  $("sidebar-scrim").hidden = !open;
}

/* ---------- sign-in ---------- */

function showLogin(message = "") {
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-username").focus();
}

async function signIn(register) {
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    $("login-error").textContent = "Enter a username and a password.";
    return;
  }
  $("login-error").textContent = "";
  try {
    const { token, user } = register ? await api.register(username, password) : await api.login(username, password);
    auth.save(token, user);
    $("login-password").value = "";
    await start();
  } catch (err) {
    let message = err.message;
    if (err instanceof AuthError) message = "Wrong username or password.";
    else if (err instanceof ApiError && err.status === 403) message = "Sign-up is closed on this hub; ask its admin for an account.";
    $("login-error").textContent = message;
  }
}

function logout(message = "") {
  socket?.close();
  socket = null;
  everConnected = false;
  auth.clear();
  chat?.clear();
  showLogin(message);
}

/** Any failure of a background call: an expired token signs out, the rest is shown. */
function fail(err) {
  if (err instanceof AuthError) logout("Your sign-in expired; please sign in again.");
  else alert(err.message);
}

/* ---------- hub connection ---------- */

function connect() {
  socket = new HubSocket(auth.token, {
    connect() {
      $("connection").dataset.state = "online";
      $("connection").textContent = "online";
      if (everConnected) {
        banner("Reconnected.", "ok");
        setTimeout(() => $("banner").dataset.tone === "ok" && banner(""), 2500);
      } else {
        banner("");
      }
      // Drones may have come and gone while we were away (or the first load failed).
      if (everConnected || !sidebar.loaded) sidebar.refresh().then(sync, fail);
      everConnected = true;
      chat.onConnect().catch(fail);
      sync();
    },
    disconnect(reason) {
      if (reason === "io client disconnect") return;
      $("connection").dataset.state = "offline";
      $("connection").textContent = "offline";
      banner("Connection to the hub lost — reconnecting…", "warn");
      sync();
    },
    refused(message) {
      // A bad or expired token, or another refusal: ask REST which one.
      api.me().then(
        () => {
          banner(`The hub refused the connection (${message}); retrying…`, "error");
          setTimeout(() => socket?.reconnect(), 3000);
        },
        fail,
      );
    },
    failed(message) {
      $("connection").dataset.state = "offline";
      $("connection").textContent = "offline";
      banner(`Cannot reach the hub (${message}) — retrying…`, "warn");
    },
    event: (name, args) => chat.handle(name, args),
  });
  chat.attach(socket);
}

/* ---------- UI state ---------- */

function gettingStarted() {
  const drones = [...sidebar.drones.values()];
  const drone = sidebar.drone;
  const phone = matchMedia(PHONE).matches;
  const where = phone ? "in the ☰ menu" : "in the sidebar";
  const steps = [];
  if (phone) steps.push("The project, drone and session controls are behind the ☰ menu at the top left.");
  if (!sidebar.projects.length) steps.push(`Create a project ${where}.`);
  if (!drones.length) steps.push(`Register a drone ${where} and run the command it shows on the machine with your code.`);
  else if (!drones.some((d) => d.online)) steps.push("Start a drone: none is online right now.");
  steps.push(`Pick a drone and a project ${where}, then Open session (or resume a past one).`);
  // The tip only while the chosen drone has not said its model answers.
  if (!drone?.model?.reachable) {
    const why = drone?.online && drone.model ? `"${drone.name}" cannot reach its model. ` : "";
    steps.push(`${why}The drone needs a model: set GADGET_LLM_BASE_URL (an OpenAI-compatible server) `
      + "where the drone runs; if the model cannot be reached the turn shows the drone's error.");
  }
  return h("div.empty-hint", null, h("h2", null, "Get started"), h("ol", null, steps.map((s) => h("li", null, s))));
}

/** Why the session cannot be opened now, or "" when it can. */
function lockBlocker() {
  const drone = sidebar.drone;
  const me = auth.user;
  if (!socket?.connected) return "Waiting for the hub connection…";
  if (!sidebar.project) return "Pick or create a project.";
  if (!drone) return "Register a drone first.";
  if (!drone.online) return `The drone "${drone.name}" is offline; start it first.`;
  if (drone.lockedBy && drone.lockedBy._id !== me?._id) return `"${drone.name}" is in use by ${drone.lockedBy.username}.`;
  if (chat.running) return "A turn is running: wait for it or cancel it before opening another session.";
  return "";
}

/** Why a prompt cannot be sent to the open session now, or "" when it can. */
function sendBlocker(drone) {
  if (!socket?.connected) return "Waiting for the hub connection…";
  if (drone && !drone.online) return `The drone "${drone.name}" is offline; send once it is back.`;
  if (drone?.workspaceMode === "user") {
    return "The workspace is in user mode (you are working in it): switch Workspace to idle to send prompts.";
  }
  return "";
}

/** Why a turn's changes cannot be undone now, or "" when they can. */
function undoBlocker() {
  const drone = chat.lock ? sidebar.drones.get(chat.lock.drone) : null;
  if (!chat.lock) return "Open this session to undo its turns.";
  if (!socket?.connected) return "Waiting for the hub connection…";
  if (!drone?.online) return "The drone is offline.";
  if (chat.running) return "A turn is running: undo once it ends.";
  return "";
}

/** Draw the turns, the session's usage and, while a call waits, say so in the tab's title. */
function render(turns, reveal) {
  view.render(turns, reveal);
  const used = usageText(totalUsage(turns));
  $("session-usage").textContent = used ? `Session: ${used}` : "";
  document.title = turns.some((t) => t.pendingApproval) ? "Approval needed · Gadget Code" : "Gadget Code";
}

function sync() {
  const lock = chat.lock;
  const blocker = lockBlocker();
  const busy = Boolean(chat.locking);
  $("lock-button").disabled = Boolean(blocker) || busy;
  $("new-session").disabled = Boolean(blocker) || busy;
  $("lock-hint").textContent = busy ? "Opening…" : blocker;
  sidebar.setBusy(chat.running ? "A turn is running: wait for it or cancel it first." : "");

  const shown = lock || chat.wanted; // the session on screen, open or waiting for its drone
  const drone = shown ? sidebar.drones.get(shown.drone) : null;
  const title = shown ? sidebar.sessions.find((s) => s._id === shown.chatSession)?.title : null;
  const note = !lock ? " (waiting for the drone)" : drone && !drone.online ? " (offline)" : "";
  $("session-title").textContent = shown ? `${title || "New session"} · ${drone?.name ?? "drone"}${note}` : "No session";
  sidebar.setActiveSession(shown?.chatSession ?? null);
  logs.scope(shown?.chatSession ?? null);

  const running = chat.running;
  const cannotSend = lock ? sendBlocker(drone) : "";
  syncMenus(lock, drone, chat.controls.settings);
  $("release-button").disabled = !lock;
  $("prompt").disabled = !lock;
  $("send").disabled = !lock || running || Boolean(cannotSend);
  $("send").title = cannotSend;
  $("composer-hint").textContent = cannotSend;
  $("composer-hint").hidden = !cannotSend;
  $("cancel").hidden = !running;
  view.setHint(lock ? h("div.empty-hint", null, h("p", null, "Ask the agent something to start.")) : gettingStarted());
  chat.schedule();
}

/* ---------- actions ---------- */

async function openSession(chatSessionId) {
  if (chat.running && chatSessionId !== chat.lock?.chatSession) {
    alert("A turn is running: wait for it or cancel it before opening another session.", "warn");
    return;
  }
  const drone = sidebar.droneId;
  const project = sidebar.projectId;
  if (await chat.open(drone, project, chatSessionId)) {
    await sidebar.loadSessions().catch(fail);
    setSidebar(false);
    sync();
    $("prompt").focus();
  }
}

async function send(event) {
  event?.preventDefault();
  const text = $("prompt").value;
  if (!text.trim() || $("send").disabled) return;
  $("send").disabled = true;
  chat.controls.askForNotifications(); // a click: the one moment browsers let a page ask
  if (await chat.submit(text)) {
    $("prompt").value = "";
    if (chat.running) setStatus("Prompt sent; waiting for the drone…"); // unless it already ended
  }
  sync();
}

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(false);
  });
  $("register-submit").addEventListener("click", () => signIn(true));
  $("logout").addEventListener("click", () => logout());
  $("theme-toggle").addEventListener("click", toggleTheme);
  $("sidebar-toggle").addEventListener("click", () => setSidebar(!document.body.classList.contains("sidebar-open")));
  $("sidebar-scrim").addEventListener("click", () => setSidebar(false));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") setSidebar(false);
  });
  matchMedia(PHONE).addEventListener("change", () => chat && sync());

  $("lock-button").addEventListener("click", () => openSession(sidebar.sessions[0]?._id ?? null));
  $("new-session").addEventListener("click", () => openSession(null));
  $("release-button").addEventListener("click", () => chat.release().then(sync));
  $("mode-select").addEventListener("change", (e) => chat.setMode(e.target.value));
  $("permission-select").addEventListener("change", (e) => chat.controls.setPermissionMode(e.target.value));
  $("model-select").addEventListener("change", (e) => chat.controls.setModel(e.target.value || null));
  $("composer").addEventListener("submit", send);
  $("cancel").addEventListener("click", () => chat.cancel());
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  });
}

/* ---------- boot ---------- */

async function start() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("user-name").textContent = auth.user?.username ?? "";
  try {
    const me = await api.me();
    auth.save(auth.token, me);
    $("user-name").textContent = me.username;
    await sidebar.refresh();
  } catch (err) {
    fail(err);
    if (err instanceof AuthError) return;
  }
  connect();
  sync();
}

function boot() {
  applyTheme(localStorage.getItem(THEME_KEY));
  logs = new Logs();
  view = new TurnsView($("turns"), {
    answer: (turnId, callId, decision) => chat.controls.answer(turnId, callId, decision),
    answering: (callId) => chat.controls.answering.has(callId),
    revert: (turnId) => chat.controls.revert(turnId),
    reverting: (turnId) => chat.controls.reverting.has(turnId),
    undoBlocker,
  });
  sidebar = new Sidebar({
    changed: () => chat && sync(),
    resume: (id) => openSession(id),
    alert: (text) => alert(text),
    me: () => auth.user,
  });
  chat = new ChatSession({
    render,
    changed: () => sync(),
    status: setStatus,
    log: (...args) => logs.add(...args),
    alert: (text, tone) => alert(text, tone),
    droneState: (state) => sidebar.updateDrone(state),
    // The hub names a session after its first prompt: refresh the list to show it.
    turnStarted: () => {
      if (!sidebar.sessions.find((s) => s._id === chat.lock?.chatSession)?.title) sidebar.loadSessions().then(sync, fail);
    },
    // The mode is shown by the menu and the drone's chip; the status line only says it
    // when the user asked for it (a turn's own agent → idle must not hide "Turn finished").
    modeChanged: (mode) => {
      const id = chat.lock?.drone;
      if (id) sidebar.updateDrone({ _id: id, workspaceMode: mode });
    },
    mode: () => sidebar.drones.get(chat.lock?.drone)?.workspaceMode ?? null,
  });
  wire();
  if (auth.token) start();
  else showLogin();
}

boot();
