// Workspace mode switches asked by the user, and what the drone answered.
//
// The hub acks `requestWorkspaceMode` with the drone's answer, `(true)` or
// `(false, reason)`. A hub that acks before the drone answers (no reason) is read from
// the `workspaceModeChanged` that follows instead.

export class ModeSwitch {
  /**
   * @param {object} hooks  mode() (the locked drone's mode as last reported), status(text),
   *   alert(text, tone), changed() (put the menu back)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.pending = null; // {mode, acked} until the drone's answer is known
  }

  /** Ask for `mode` over `socket`; resolves once the ack came. */
  async request(socket, mode) {
    const pending = { mode, acked: false };
    this.pending = pending;
    try {
      const [ok, reason] = await socket.request("requestWorkspaceMode", mode);
      if (this.pending !== pending) return; // a later request or answer took over
      if (!ok) {
        this.pending = null;
        this.refused(reason);
        return;
      }
      pending.acked = true;
      if (this.hooks.mode() === mode) this.answered(mode); // the drone's event came first
    } catch (err) {
      if (this.pending === pending) this.pending = null;
      this.hooks.alert(err.message);
      this.hooks.changed();
    }
  }

  /** A `workspaceModeChanged`: settle the pending request, if any. */
  answered(mode) {
    const pending = this.pending;
    if (!pending) return;
    if (mode === pending.mode) {
      this.pending = null;
      this.hooks.status(`Workspace mode: ${mode}.`);
    } else if (pending.acked) {
      this.pending = null;
      this.refused(null);
    }
  }

  refused(reason) {
    const now = this.hooks.mode();
    const text = `Workspace mode unchanged${now ? ` (${now})` : ""}: ${reason || "the drone refused the switch"}.`;
    this.hooks.alert(text, "warn");
    this.hooks.status(text);
    this.hooks.changed();
  }
}
