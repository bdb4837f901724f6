// The session bar's menus: the drone's workspace mode, the session's permission mode and
// its model. Each shows what the hub last said; a choice is sent by app.js and a refusal
// puts the menu back at the next sync.

import { $, h, replaceChildren } from "./dom.js";
import { PERMISSION_MODES } from "./controls.js";

/**
 * @param {object|null} lock  the session held
 * @param {object|null} drone  its drone as the sidebar knows it (online, workspaceMode, model, models)
 * @param {{permissionMode, model}} settings  the chat session's, as the hub said
 */
export function syncMenus(lock, drone, settings) {
  syncMode(lock, drone);
  syncPermissions(lock, drone, settings.permissionMode);
  syncModels(lock, drone, settings.model);
}

/** The Workspace menu: idle and user can be chosen; agent is only shown, while a turn runs. */
function syncMode(lock, drone) {
  const select = $("mode-select");
  const mode = drone?.workspaceMode || "idle";
  const agent = mode === "agent";
  select.querySelector("option[value=agent]").hidden = !agent;
  select.value = mode;
  select.disabled = !lock || !drone?.online || agent;
  select.title = agent
    ? "Agent mode: the drone is running a turn. It goes back to idle when the turn ends."
    : "idle: the agent may be sent prompts · user: you are working in the workspace yourself";
}

/** The session's permission mode (empty until the hub said it). */
function syncPermissions(lock, drone, mode) {
  const select = $("permission-select");
  select.value = PERMISSION_MODES.includes(mode) ? mode : "";
  select.disabled = !lock || !drone?.online;
}

/** The models the drone's endpoint lists; "" is the drone's own default. */
function syncModels(lock, drone, chosen) {
  const select = $("model-select");
  const names = [...(Array.isArray(drone?.models) ? drone.models : [])];
  if (chosen && !names.includes(chosen)) names.push(chosen);
  const fallback = drone?.model?.name ? `default (${drone.model.name})` : "default";
  const key = JSON.stringify([fallback, names]);
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    replaceChildren(select, h("option", { value: "" }, fallback), names.map((n) => h("option", { value: n }, n)));
  }
  select.value = chosen ?? "";
  select.disabled = !lock || !drone?.online || !names.length;
  select.title = names.length
    ? "The model for this session's next prompts"
    : "The drone's endpoint lists no other models: it uses its GADGET_LLM_MODEL";
}
