// The sidebar: projects, drones (live online state, mode, lock holder), drone
// registration and the past sessions of the selected project.

import { api } from "./api.js";
import { $, h, moment, replaceChildren, when } from "./dom.js";

const SELECTION_KEY = "gadget.selection";

function loadSelection() {
  try {
    return JSON.parse(localStorage.getItem(SELECTION_KEY) || "{}");
  } catch {
    return {};
  }
}

/** The hub's base URL as a drone should use it, e.g. "http://host:8000". */
export function hubOrigin() {
  return new URL(".", document.baseURI).href.replace(/\/$/, "");
}

export class Sidebar {
  /**
   * @param {object} hooks  changed() (selection or drone state changed), resume(chatSessionId),
   *   alert(message), me() (the signed-in user)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.projects = [];
    this.drones = new Map();
    this.sessions = [];
    this.activeSession = null;
    this.busy = ""; // why other sessions cannot be opened now ("" when they can)
    this.loaded = false; // true once projects, drones and sessions came in
    const saved = loadSelection();
    this.droneId = saved.drone || null;
    this.projectId = saved.project || null;

    $("project-select").addEventListener("change", (e) => this.selectProject(e.target.value));
    $("drone-select").addEventListener("change", (e) => this.selectDrone(e.target.value));
    $("project-form").addEventListener("submit", (e) => this.createProject(e));
    $("drone-register-form").addEventListener("submit", (e) => this.registerDrone(e));
    $("drone-command-copy").addEventListener("click", () => this.copyCommand());
  }

  get drone() {
    return this.drones.get(this.droneId) || null;
  }

  get project() {
    return this.projects.find((p) => p._id === this.projectId) || null;
  }

  save() {
    localStorage.setItem(SELECTION_KEY, JSON.stringify({ drone: this.droneId, project: this.projectId }));
  }

  async refresh() {
    await Promise.all([this.loadProjects(), this.loadDrones()]);
    await this.loadSessions();
    this.loaded = true;
  }

  async loadProjects() {
    this.projects = await api.projects();
    if (!this.project) this.projectId = this.projects[0]?._id ?? null;
    this.renderProjects();
  }

  async loadDrones() {
    const list = await api.drones();
    this.drones = new Map(list.map((d) => [d._id, d]));
    if (!this.drone) this.droneId = (list.find((d) => d.online) || list[0])?._id ?? null;
    this.renderDrones();
  }

  async loadSessions() {
    this.sessions = this.projectId ? await api.chatSessions(this.projectId) : [];
    this.renderSessions();
  }

  selectProject(id) {
    this.projectId = id || null;
    this.save();
    this.renderProjects();
    this.loadSessions().catch((err) => this.hooks.alert(err.message));
    this.hooks.changed();
  }

  selectDrone(id) {
    this.droneId = id || null;
    this.save();
    this.renderDrones();
    this.hooks.changed();
  }

  /** Apply a `droneState` or `workspaceModeChanged` update; unknown drones reload the list. */
  updateDrone(state) {
    const drone = this.drones.get(state._id);
    if (!drone) {
      this.loadDrones().then(() => this.hooks.changed(), (err) => this.hooks.alert(err.message));
      return;
    }
    const next = { ...drone, ...state };
    // A hub that does not send lastSeen yet: the drone was last seen when it went away, now.
    if (drone.online && state.online === false && !state.lastSeen) next.lastSeen = new Date().toISOString();
    this.drones.set(state._id, next);
    this.renderDrones();
    this.hooks.changed();
  }

  /** Disable opening other sessions, saying why (`reason` "" enables them again). */
  setBusy(reason) {
    if (reason === this.busy) return;
    this.busy = reason;
    this.renderSessions();
  }

  /** Mark the open session in the list (reloading the list once if it is new). */
  setActiveSession(chatSessionId) {
    if (chatSessionId === this.activeSession) return;
    this.activeSession = chatSessionId;
    if (chatSessionId && !this.sessions.some((s) => s._id === chatSessionId)) {
      this.loadSessions().catch((err) => this.hooks.alert(err.message));
    } else {
      this.renderSessions();
    }
  }

  renderProjects() {
    const select = $("project-select");
    if (!this.projects.length) {
      replaceChildren(select, h("option", { value: "" }, "No projects yet — add one below"));
    } else {
      replaceChildren(select, this.projects.map((p) => h("option", { value: p._id, selected: p._id === this.projectId }, p.name)));
    }
  }

  renderDrones() {
    const drones = [...this.drones.values()];
    const select = $("drone-select");
    if (!drones.length) replaceChildren(select, h("option", { value: "" }, "No drones registered"));
    else {
      replaceChildren(select, drones.map((d) => h(
        "option", { value: d._id, selected: d._id === this.droneId }, `${d.name} — ${d.online ? "online" : "offline"}`,
      )));
    }
    replaceChildren($("drone-list"), drones.map((d) => this.droneItem(d)));

    const hint = $("drone-hint");
    const online = drones.filter((d) => d.online).length;
    hint.hidden = online > 0;
    if (!drones.length) {
      hint.textContent = "No drones yet. Register one below, then run the command it shows on the machine that has your code.";
    } else if (!online) {
      hint.textContent = "No drone is online. Start one with the command shown when you registered it "
        + "(gadget drone --hub … --id … --key … --workspace DIR), or run `gadget up` in your project for a local hub and drone.";
    }
  }

  droneItem(d) {
    return h(
      "li.drone",
      {
        dataset: {
          droneId: d._id, online: String(Boolean(d.online)), mode: d.workspaceMode || "idle",
          lastSeen: d.lastSeen || null, sandbox: d.sandbox || null,
        },
      },
      h("button.drone-pick", {
        type: "button",
        "aria-pressed": String(d._id === this.droneId),
        onclick: () => this.selectDrone(d._id),
      },
      h("span.dot", { "aria-hidden": "true" }),
      h("span.drone-name", null, d.name),
      h("span.sr-only", null, d.online ? " (online)" : " (offline)")),
      h("span.drone-meta.muted", null, [d.hostname, d.online ? null : offlineText(d)].filter(Boolean).join(" · ")),
      this.stateLine(d),
      this.modelLine(d),
      mcpLine(d),
      warnings(d),
      h("span.drone-actions", null,
        d.online ? h("button.small", { type: "button", onclick: () => this.terminate(d) }, "Stop") : null,
        h("button.small.danger", { type: "button", onclick: () => this.remove(d) }, "Remove")),
    );
  }

  /** Mode and lock holder while online; offline, only a lock the hub keeps for its turn or IDE. */
  stateLine(d) {
    const me = this.hooks.me();
    const mine = d.lockedBy && d.lockedBy._id === me?._id;
    const holder = d.lockedBy ? (mine ? "you" : d.lockedBy.username) : null;
    if (!d.online) {
      return holder ? h("span.drone-state", null, h("span.lock-holder", null, `lock kept for ${holder}`)) : null;
    }
    return h("span.drone-state", null,
      h("span.chip.mode", { title: "Workspace mode" }, d.workspaceMode || "idle"), " ",
      h("span.lock-holder", null, holder ? `locked by ${holder}` : "free"),
      d.sandbox === "none"
        ? h("span.chip.warn.sandbox-chip", { title: "The agent's commands run without a sandbox (bubblewrap is missing)" }, "no sandbox")
        : null);
  }

  /** The drone's model, and how to configure one when it does not answer. */
  modelLine(d) {
    if (!d.online || !d.model) return null;
    if (d.model.reachable) return h("span.drone-model.muted", null, `model: ${d.model.name}`);
    return h("span.drone-model.model-warning", { role: "note" }, `⚠ ${d.model.error || `no model answers at ${d.model.baseUrl}`}`);
  }

  /** Past sessions worth resuming: those with a prompt (a title), and the open one. */
  get listed() {
    return this.sessions.filter((s) => s.title || s._id === this.activeSession);
  }

  renderSessions() {
    const list = $("session-list");
    const shown = this.listed;
    if (!shown.length) {
      replaceChildren(list, h("li.muted", null, this.projectId ? "No sessions yet." : "Pick a project."));
      return;
    }
    replaceChildren(list, shown.map((s) => h(
      "li",
      null,
      h("button.session-pick", {
        type: "button",
        dataset: { sessionId: s._id },
        "aria-current": s._id === this.activeSession ? "true" : null,
        disabled: Boolean(this.busy) && s._id !== this.activeSession,
        title: this.busy && s._id !== this.activeSession ? this.busy : null,
        onclick: () => this.hooks.resume(s._id),
      },
      h("span.session-name", null, s.title || "Untitled session"),
      h("span.muted", null, when(s.createdAt))),
    )));
  }

  async createProject(event) {
    event.preventDefault();
    const input = $("project-name");
    const name = input.value.trim();
    if (!name) return;
    try {
      const project = await api.createProject(name);
      input.value = "";
      this.projects.push(project);
      this.selectProject(project._id);
    } catch (err) {
      this.hooks.alert(`Could not create the project: ${err.message}`);
    }
  }

  async registerDrone(event) {
    event.preventDefault();
    const input = $("drone-name");
    const name = input.value.trim();
    if (!name) return;
    try {
      const { registration, key } = await api.registerDrone(name);
      input.value = "";
      $("drone-command").textContent =
        `gadget drone --hub ${hubOrigin()} --id ${registration._id} --key ${key} --workspace .`;
      $("drone-key-panel").hidden = false;
      this.drones.set(registration._id, { online: false, workspaceMode: "idle", lockedBy: null, ...registration });
      this.selectDrone(registration._id);
    } catch (err) {
      this.hooks.alert(`Could not register the drone: ${err.message}`);
    }
  }

  async copyCommand() {
    try {
      await navigator.clipboard.writeText($("drone-command").textContent);
      $("drone-command-copy").textContent = "Copied";
    } catch {
      window.getSelection().selectAllChildren($("drone-command"));
    }
  }

  async terminate(d) {
    if (!window.confirm(`Stop the drone "${d.name}"? Its process exits.`)) return;
    try {
      await api.terminateDrone(d._id);
    } catch (err) {
      this.hooks.alert(`Could not stop the drone: ${err.message}`);
    }
  }

  async remove(d) {
    if (!window.confirm(`Remove the drone "${d.name}"? Its key stops working.`)) return;
    try {
      await api.deleteDrone(d._id);
      this.drones.delete(d._id);
      if (this.droneId === d._id) this.droneId = null;
      await this.loadDrones();
      this.hooks.changed();
    } catch (err) {
      this.hooks.alert(`Could not remove the drone: ${err.message}`);
    }
  }
}

/** The drone's MCP tool servers: each with its tool count, or why it failed to start. */
function mcpLine(d) {
  if (!d.online || !Array.isArray(d.mcp) || !d.mcp.length) return null;
  return h("ul.drone-mcp", { "aria-label": "MCP servers" }, d.mcp.map((server) => {
    const tools = Number.isFinite(server.tools) ? server.tools : 0;
    const text = server.ok
      ? `${server.name} · ${tools} tool${tools === 1 ? "" : "s"}`
      : `⚠ ${server.name}: ${server.error || "failed to start"}`;
    return h(`li.mcp-server${server.ok ? "" : ".mcp-failed"}`, {
      dataset: { server: server.name, ok: String(Boolean(server.ok)) },
      title: server.ok ? `MCP server "${server.name}"` : `MCP server "${server.name}" is not available; the drone works without it`,
    }, text);
  }));
}

/** "offline · last seen 14:03:07" (when the drone went away, or "never seen"). */
function offlineText(d) {
  return d.lastSeen ? `offline · last seen ${moment(d.lastSeen)}` : "offline · never seen";
}

/** What the hub warns about a drone: another process took its id over. */
function warnings(d) {
  const c = d.conflict;
  if (!c) return null;
  const who = [c.hostname && `on ${c.hostname}`, c.pid != null && `pid ${c.pid}`].filter(Boolean).join(", ");
  const at = c.at ? ` at ${moment(c.at)}` : "";
  return h("span.drone-warning.drone-conflict", { role: "note" },
    `⚠ Another process with this drone's id${who ? ` (${who})` : ""} replaced it${at}. `
    + "Run each drone id in one place only.");
}
