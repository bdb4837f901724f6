// The agent under the user's control (issue 10): the session's permission mode and model,
// answers to tool approvals, undoing / re-applying a turn, and a notification when a call
// waits while the tab is hidden. Every request is acknowledged by the hub with
// `(true, …)` or `(false, reason)`; refusals are shown with the hub's reason.

import { api } from "./api.js";

export const PERMISSION_MODES = ["auto", "ask", "read-only"];
const DECISION_TEXT = { allow: "Allowed", deny: "Denied", "allow-session": "Allowed for this session" };

export class Controls {
  /**
   * @param {object} session  the ChatSession (its socket, lock and turns)
   * @param {object} hooks  alert(text, tone), status(text), changed() (redraw the controls)
   */
  constructor(session, hooks) {
    this.session = session;
    this.hooks = hooks;
    this.settings = { permissionMode: null, model: null }; // of the locked chat session
    this.answering = new Set(); // callIds whose answer is on its way
    this.reverting = new Set(); // turnIds whose undo / re-apply is on its way
    this.notified = new Set(); // callIds a notification was shown for
  }

  get socket() {
    return this.session.socket;
  }

  /** Read the chat session's permission mode and model (REST), after a lock. */
  async load(project, chatSession) {
    const list = await api.chatSessions(project);
    if (this.session.lock?.chatSession !== chatSession) return;
    const chat = list.find((c) => c._id === chatSession);
    this.settings = { permissionMode: chat?.permissionMode ?? null, model: chat?.model ?? null };
    this.hooks.changed();
  }

  clear() {
    this.settings = { permissionMode: null, model: null };
    this.answering.clear();
  }

  /** `permissionModeChanged({chatSession, mode})`: another tab (or this one) changed it. */
  permissionModeChanged(change) {
    if (!change || change.chatSession !== this.session.lock?.chatSession) return;
    this.settings = { ...this.settings, permissionMode: change.mode };
    this.hooks.changed();
  }

  /** `modelChanged({chatSession, model})`: another tab (or this one) chose the model. */
  modelChanged(change) {
    if (!change || change.chatSession !== this.session.lock?.chatSession) return;
    this.settings = { ...this.settings, model: change.model ?? null };
    this.hooks.changed();
  }

  async setPermissionMode(mode) {
    const reply = await this.request(`Could not change the permissions to ${mode}`, "setPermissionMode", mode);
    if (reply) {
      this.settings = { ...this.settings, permissionMode: mode };
      this.hooks.status(`Permissions: ${mode}.`);
    }
    this.hooks.changed(); // a refused one puts the menu back
  }

  /** `model` a name from the drone's list, or null for the drone's default. */
  async setModel(model) {
    const reply = await this.request("Could not change the model", "setModel", model);
    if (reply) {
      this.settings = { ...this.settings, model };
      this.hooks.status(model ? `Model: ${model} (from the next prompt).` : "Model: the drone's default (from the next prompt).");
    }
    this.hooks.changed();
  }

  /** Answer a waiting tool call; the first answer from any tab wins. */
  async answer(turnId, callId, decision) {
    if (this.answering.has(callId)) return;
    this.answering.add(callId);
    this.session.schedule();
    // The hub's approvalDecision (which drops the card) comes before its ack.
    const waiting = this.session.turns.get(turnId)?.pendingApproval;
    const name = waiting?.callId === callId ? waiting.name : "the tool call";
    try {
      const [ok, reason] = await this.socket.request("answerApproval", turnId, callId, decision);
      if (ok) {
        this.hooks.status(`${DECISION_TEXT[decision]}: ${name}.`);
        this.session.book.unmarked(turnId, { type: "approvalDecision", callId, decision, by: null });
      } else if (reason === "already answered") {
        this.hooks.status(`${name} was already answered (in another tab).`);
        this.session.book.unmarked(turnId, { type: "approvalDecision", callId, decision: null, by: null });
      } else {
        this.hooks.alert(`Could not answer ${name}: ${reason || "refused by the hub"}`);
      }
    } catch (err) {
      this.hooks.alert(err.message);
    } finally {
      this.answering.delete(callId);
      this.session.schedule();
    }
  }

  /** Undo a turn's changes in the workspace, or re-apply an undone one. */
  async revert(turnId) {
    if (this.reverting.has(turnId)) return;
    const turn = this.session.turns.get(turnId);
    const what = turn?.reverted ? "re-apply" : "undo";
    this.reverting.add(turnId);
    this.session.schedule();
    let reply;
    try {
      reply = await this.request(`Could not ${what} the turn`, "revertTurn", turnId);
    } finally {
      this.reverting.delete(turnId);
      this.session.schedule();
    }
    if (!reply) return;
    const result = reply[1] && typeof reply[1] === "object" ? reply[1] : {};
    const conflicts = Array.isArray(result.conflicts) ? result.conflicts : [];
    const reverted = result.reverted === true;
    this.session.book.unmarked(turnId, { type: "turnReverted", reverted, conflicts });
    const restored = Array.isArray(result.restored) ? result.restored.length : null;
    const files = restored === null ? "" : ` (${restored} file${restored === 1 ? "" : "s"})`;
    const kept = conflicts.length ? `; ${conflicts.length} changed since, left as they are` : "";
    this.hooks.status(`${reverted ? "Turn undone" : "Turn re-applied"}${files}${kept}.`);
  }

  /** A request whose refusal is shown as `what: reason`; returns the ack, or null. */
  async request(what, event, ...args) {
    if (!this.session.lock) return null;
    try {
      const reply = await this.socket.request(event, ...args);
      if (reply[0]) return reply;
      this.hooks.alert(`${what}: ${reply[1] || "refused by the hub"}`);
    } catch (err) {
      this.hooks.alert(err.message);
    }
    return null;
  }

  /** Ask for notifications (call from a click: browsers only ask then). */
  askForNotifications() {
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  /** A live event was applied: a call that now waits while the tab is hidden notifies. */
  applied(turn, event) {
    const waiting = turn.pendingApproval;
    if (event.type !== "toolApproval" || !waiting || this.notified.has(waiting.callId)) return;
    if (document.visibilityState !== "hidden" || !("Notification" in window)) return;
    if (Notification.permission !== "granted") return;
    this.notified.add(waiting.callId);
    const note = new Notification("Gadget Code: approval needed", {
      body: `${waiting.name}: ${summary(waiting)}`,
      tag: `gadget-approval-${waiting.callId}`,
    });
    note.onclick = () => {
      window.focus();
      note.close();
    };
  }
}

/** One line saying what a waiting call would do. */
export function summary(approval) {
  let params = approval.parameters;
  if (typeof params === "string") {
    try {
      params = JSON.parse(params);
    } catch {
      return params.slice(0, 160);
    }
  }
  const value = params && typeof params === "object" ? (params.command ?? params.path ?? params.file_path) : null;
  const text = value != null ? String(value) : JSON.stringify(params ?? null);
  return text.split("\n")[0].slice(0, 160);
}
