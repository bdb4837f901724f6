// The chat session: the drone lock, requests to the hub, and the hub's events.
//
// Resuming never loses or duplicates: the turns are kept by the stream's seq (turns.js),
// so a (re)lock's snapshot, the REST history and the live events can come in any order.
// A stream event's trailing {turnId, seq} mark says which turn it belongs to.

import { api } from "./api.js";
import { Controls } from "./controls.js";
import { ModeSwitch } from "./mode.js";
import { TurnBook } from "./turns.js";

const LOCK_KEY = "gadget.lock";
const AGENT_EVENTS = ["agent:thinking", "agent:response", "agent:tool-call", "agent:tool-result", "agent:complete"];

/** Stream events, as reducer events (state.js); each may end with a {turnId, seq} mark. */
const STREAM = {
  thinking: (content) => ({ type: "thinking", content }),
  response: (content) => ({ type: "response", content }),
  toolCall: (callId, name, params, response) => ({ type: "toolCall", callId, name, params, response }),
  workOrderComplete: (turnId, success, message) => ({ type: "workOrderComplete", turnId, success, message }),
  toolApproval: (approval) => ({ type: "toolApproval", turnId: approval?.turnId, approval }),
  turnChanges: (turnId, changes) => ({ type: "turnChanges", turnId, changes }),
  usage: (usage) => ({ type: "usage", turnId: usage?.turnId, usage }),
  // The hub's own (never marked): an answer to an approval, an undone / re-applied turn.
  approvalDecision: (d) => ({ type: "approvalDecision", ...d }),
  turnReverted: (r) => ({ type: "turnReverted", ...r }),
};
for (const type of AGENT_EVENTS) STREAM[type] = (data) => ({ type, data });

function isMark(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    && Object.keys(value).length === 2 && typeof value.turnId === "string" && Number.isInteger(value.seq);
}

export class ChatSession {
  /**
   * @param {object} hooks  render(turns), changed() (lock / current turn / mode changed),
   *   status(text), log(...args), alert(text, tone), droneState(state), modeChanged(mode),
   *   mode() (the locked drone's workspace mode as last reported), turnStarted(turn)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.socket = null;
    this.lock = null; // {drone, project, chatSession}
    this.epoch = 0; // bumped by every open(): a history load of an older one is ignored
    this.locking = null; // {chatSession} while a lock request waits (chatSession null: a new one)
    this.wanted = null; // a session to re-open as soon as its drone is back online
    this.modes = new ModeSwitch(hooks);
    this.controls = new Controls(this, hooks);
    this.book = new TurnBook({
      schedule: () => this.schedule(),
      changed: () => hooks.changed(),
      status: (text) => hooks.status(text),
      ours: (json) => this.ours(json),
      applied: (turn, event) => this.controls.applied(turn, event),
    });
    this.turns = this.book.turns;
    this.reveal = null; // a turn just sent, to scroll into view at the next render
    this.frame = 0;
    this.handlers = this.eventTable();
  }

  /** The lock to restore after a reload (same user re-locking takes over). */
  get savedLock() {
    try {
      return JSON.parse(localStorage.getItem(LOCK_KEY) || "null");
    } catch {
      return null;
    }
  }

  get currentTurnId() {
    return this.book.currentTurnId;
  }

  get running() {
    return this.book.running;
  }

  attach(socket) {
    this.socket = socket;
  }

  /** Called on every (re)connect: take the session back and refresh it. */
  async onConnect() {
    const target = this.lock || this.wanted || this.savedLock;
    if (target?.chatSession) await this.open(target.drone, target.project, target.chatSession, { quiet: true });
  }

  /**
   * Lock `drone` for `project` and show the session: `chatSession` null starts a new one.
   * Returns true on success. A refusal while another session is open leaves that session
   * as it was (the hub refuses before it changes anything).
   */
  async open(drone, project, chatSession, { quiet = false } = {}) {
    if (!this.socket?.connected) {
      this.hooks.alert("Not connected to the hub yet; try again in a moment.");
      return false;
    }
    const previous = this.lock;
    const shown = previous?.chatSession ?? this.wanted?.chatSession ?? null;
    const what = chatSession ? "the session" : "a new session";
    this.locking = { chatSession };
    if (!quiet) this.wanted = null;
    this.hooks.changed();
    const epoch = ++this.epoch;
    // A resumed session's snapshot may beat the ack: make room for it now (the session on
    // screen stays: its turns are kept by seq). A new session has no turns yet, so the one
    // on screen stays until the hub says yes.
    if (chatSession && chatSession !== shown) this.reset();
    let back = null;
    try {
      const [ok, value] = await this.socket.request(
        "requestSessionLock", { _id: drone }, { _id: project }, chatSession ? { _id: chatSession } : null,
      );
      if (!ok) {
        const reason = value || "refused by the hub";
        if (previous && !quiet) {
          this.hooks.alert(`Could not open ${what}: ${reason}`);
          this.hooks.status(`Could not open ${what} (${reason}); still in the session you had open.`);
          if (chatSession && chatSession !== previous.chatSession) back = previous; // its turns were cleared
          return false;
        }
        this.forget();
        if (!quiet) {
          this.hooks.alert(`Could not open ${what}: ${reason}`);
          this.hooks.status(`Could not open ${what}.`);
          return false;
        }
        // Coming back (reload, reconnect): show the history and retry when the drone is back.
        this.wanted = { drone, project, chatSession };
        localStorage.setItem(LOCK_KEY, JSON.stringify(this.wanted)); // a reload keeps trying
        this.hooks.status(`Could not re-open the session (${reason}); it re-opens when the drone is back.`);
        await this.loadHistory(epoch, chatSession);
        return false;
      }
      if (value !== previous?.chatSession && !chatSession) this.reset();
      this.lock = { drone, project, chatSession: value };
      localStorage.setItem(LOCK_KEY, JSON.stringify(this.lock));
      this.hooks.status("Session open.");
      await Promise.all([
        this.loadHistory(epoch, value),
        this.controls.load(project, value).catch((err) => this.hooks.alert(err.message)),
      ]);
      return true;
    } catch (err) {
      this.hooks.alert(err.message);
      return false;
    } finally {
      this.locking = null;
      this.hooks.changed();
      // Still locked for the previous session: take it again, which replays its state.
      if (back) await this.open(back.drone, back.project, back.chatSession, { quiet: true });
    }
  }

  async release() {
    if (!this.lock) return;
    try {
      const [ok, reason] = await this.socket.request("releaseSessionLock");
      if (!ok) {
        this.hooks.alert(`Could not release the drone: ${reason || "refused"}`);
        return;
      }
    } catch (err) {
      this.hooks.alert(err.message);
      return;
    }
    this.wanted = null;
    this.forget();
    this.reset();
    this.hooks.status("Released the drone.");
  }

  /** Forget everything (signing out). */
  clear() {
    this.wanted = null;
    this.forget();
    this.reset();
  }

  /** Drop the lock (but keep the turns on screen). */
  forget() {
    this.lock = null;
    this.controls.clear();
    localStorage.removeItem(LOCK_KEY);
    this.hooks.changed();
  }

  reset() {
    this.book.clear();
    this.schedule();
  }

  /** Show the stored turns of `chatSession`; each replaces the view only if newer by seq. */
  async loadHistory(epoch, chatSession) {
    const list = await api.turns(chatSession);
    if (epoch !== this.epoch) return; // another open() started meanwhile
    for (const json of list) this.book.adopt(json);
    this.schedule();
    this.hooks.changed();
  }

  async submit(prompt) {
    if (!this.lock || this.running) return false;
    try {
      const [ok, value] = await this.socket.request("submitPrompt", prompt);
      if (!ok) {
        this.hooks.alert(`The prompt was not accepted: ${value || "refused by the hub"}`);
        return false;
      }
      this.book.local(value, this.lock.chatSession, prompt); // `turnStarted` came first, as a rule
      this.reveal = value;
      this.schedule();
      this.hooks.changed();
      return true;
    } catch (err) {
      this.hooks.alert(err.message);
      return false;
    }
  }

  async cancel() {
    const turnId = this.currentTurnId;
    if (!turnId) return;
    try {
      const [ok, reason] = await this.socket.request("cancelWorkOrder", turnId);
      if (!ok) this.hooks.alert(`Could not cancel: ${reason || "refused"}`);
      else this.hooks.status("Cancelling…");
    } catch (err) {
      this.hooks.alert(err.message);
    }
  }

  /** Ask the drone for a workspace mode (its answer or refusal goes to the status line). */
  setMode(mode) {
    if (this.lock) return this.modes.request(this.socket, mode);
    return Promise.resolve();
  }

  /**
   * Dispatch one hub→IDE event: stream events by their mark, the others by the table. A
   * numbered event this page cannot show (a newer hub's) still moves its turn's cursor.
   */
  handle(name, args) {
    window.__gadgetTrace?.push([name, ...args]); // tests and debugging: set it to [] to record
    const build = STREAM[name];
    const last = args[args.length - 1];
    if (isMark(last)) {
      const event = build ? build(...args.slice(0, -1)) : { type: name };
      this.book.marked(last.turnId, last.seq, event);
      return;
    }
    if (build) {
      const event = build(...args);
      this.book.unmarked(event.turnId ?? null, event);
      return;
    }
    const handler = this.handlers[name];
    if (handler) handler(...args);
  }

  eventTable() {
    return {
      status: (message) => this.hooks.status(String(message ?? "")),
      log: (...args) => this.hooks.log(...args),
      workspaceModeChanged: (mode) => {
        this.hooks.modeChanged(mode);
        this.modes.answered(mode);
      },
      droneState: (state) => {
        this.checkLock(state);
        this.retryWanted(state);
        this.hooks.droneState(state);
      },
      error: (err) => this.refused(err),
      turnStarted: (turn) => {
        this.book.started(turn);
        if (this.ours(turn)) this.hooks.turnStarted(turn);
      },
      turnSnapshot: (turn) => this.book.snapshot(turn),
      permissionModeChanged: (change) => this.controls.permissionModeChanged(change),
      modelChanged: (change) => this.controls.modelChanged(change),
    };
  }

  /** The drone we wait for is back online: re-open the session we were in. */
  retryWanted(state) {
    const wanted = this.wanted;
    if (!wanted || this.lock || this.locking || state?._id !== wanted.drone || !state.online) return;
    this.open(wanted.drone, wanted.project, wanted.chatSession, { quiet: true }).catch((err) => this.hooks.alert(err.message));
  }

  /** Our drone is now locked for another session, or for none: the lock is gone. */
  checkLock(state) {
    if (!this.lock || this.locking || state?._id !== this.lock.drone || !("chatSession" in state)) return;
    if (state.chatSession === this.lock.chatSession) return;
    this.forget();
    this.hooks.status("This session no longer holds the drone; open it again to continue.");
  }

  /** A hub `error` event; refusals of acknowledged requests are reported by their caller. */
  refused(err) {
    const text = `${err?.event ? `${err.event}: ` : ""}${err?.message ?? "error"}`;
    this.hooks.log(new Date().toISOString(), "hub", "error", text, null);
    if (!this.socket?.awaiting(err?.event)) this.hooks.alert(text);
    this.hooks.changed(); // e.g. put the mode switch back
  }

  /** Whether a turn belongs to the session shown (or being locked: a snapshot may beat the ack). */
  ours(json) {
    if (!json) return false;
    const sessions = [this.locking?.chatSession, this.lock?.chatSession, this.wanted?.chatSession].filter(Boolean);
    return sessions.length > 0 && (!json.chatSession || sessions.includes(json.chatSession));
  }

  /** The turn to scroll into view at this render, once. */
  takeReveal() {
    const id = this.reveal;
    this.reveal = null;
    return id;
  }

  /** Coalesce renders to one per animation frame however fast the deltas come. */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.hooks.render(this.book.ordered(), this.takeReveal());
    });
  }
}
