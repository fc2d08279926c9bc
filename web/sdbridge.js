// SD Bridge web extension: API keys and the server-side settings in the Settings dialog, the
// result cache's clear button, remaining credits, and toasts that name the fix when a hosted
// call fails for a key or for credits, or may have been charged.
// A key typed here goes to the pack's route and is never stored as a ComfyUI setting, never
// put in the graph, and never sent back: the dialog shows only whether a key is set and where
// it comes from.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// The providers come from the pack's own table (GET /sdbridge/providers): names, env vars,
// pages, what each key is called. Read before the extension registers, since the settings
// rows are declared with it.
async function loadProviders() {
  try {
    const response = await api.fetchApi("/sdbridge/providers");
    if (response.ok) return (await response.json()).providers ?? [];
    console.warn(`[SD Bridge] provider list: the server answered ${response.status}`);
  } catch (error) {
    console.warn("[SD Bridge] provider list could not be read", error);
  }
  return [];
}

const PROVIDERS = await loadProviders();
const credits = {};

function toast(severity, summary, detail, life = 5000) {
  const toaster = app.extensionManager?.toast;
  if (toaster) toaster.add({ severity, summary, detail, life });
  else console.warn(`[SD Bridge] ${summary}: ${detail}`);
}

async function keyStatus() {
  const response = await api.fetchApi("/sdbridge/keys");
  return response.ok ? response.json() : {};
}

function describe(status, provider) {
  const state = status?.[provider.id];
  if (!state) return "status unknown";
  let text = state.set ? `set (${state.source === "environment" ? `from ${state.env}` : "saved on the server"})` : "not set";
  if (state.source === "environment") text += `; ${state.env} wins over a key saved here`;
  if (state.set && credits[provider.id] !== undefined) text += ` · ${credits[provider.id]} credits left`;
  return text;
}

async function postJson(path, body) {
  const response = await api.fetchApi(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return [response, await response.json().catch(() => ({}))];
}

// A settings row kept on the server: a status line, a field, Save and Clear. `status()` gives
// the line; `send(text)` posts the field ("" clears) and answers [ok, toast title, toast text].
function serverRow({ inputType, placeholder, status, send }) {
  return () => {
    const row = document.createElement("div");
    row.style.cssText = "display:flex;flex-direction:column;gap:6px;min-width:320px";
    const state = document.createElement("span");
    state.style.opacity = "0.8";
    const controls = document.createElement("div");
    controls.style.cssText = "display:flex;gap:6px";
    const input = Object.assign(document.createElement("input"), { type: inputType, autocomplete: "off", placeholder });
    input.style.flex = "1";
    const save = Object.assign(document.createElement("button"), { textContent: "Save" });
    const clear = Object.assign(document.createElement("button"), { textContent: "Clear" });
    const refresh = async () => { state.textContent = await status(); };
    const submit = async (text) => {
      const [ok, title, detail] = await send(text);
      input.value = "";
      toast(ok ? "success" : "error", title, detail);
      await refresh();
    };
    save.onclick = () => input.value.trim() && submit(input.value.trim());
    clear.onclick = () => submit("");
    controls.append(input, save, clear);
    row.append(state, controls);
    refresh();
    return row;
  };
}

// A provider's key: a password field; the key goes to the server and never comes back.
function keyEditor(provider) {
  return serverRow({
    inputType: "password",
    placeholder: `paste your ${provider.name} ${provider.key_label}`,
    status: async () => describe(await keyStatus(), provider),
    send: async (key) => {
      const [response, answer] = await postJson(`/sdbridge/keys/${provider.id}`, { key });
      if (!response.ok) return [false, `${provider.name} key not saved`, answer.error || response.statusText];
      return [true, `${provider.name} ${provider.key_label}`, key ? "saved" : "cleared"];
    },
  });
}

// The pack's server-side settings (GET /sdbridge/settings): each entry names its env var, label,
// help, section and what applies while it is unset, so no list of settings lives here.
async function serverSettings() {
  try {
    const response = await api.fetchApi("/sdbridge/settings");
    if (response.ok) return (await response.json()).settings ?? [];
  } catch (error) {
    console.warn("[SD Bridge] settings could not be read", error);
  }
  return [];
}

function describeSetting(entry) {
  if (!entry) return "status unknown";
  if (entry.source === "environment") return `${entry.value} (from ${entry.name}, which wins over a value saved here)`;
  if (entry.source === "file") return `${entry.value} (saved on the server)`;
  return `not set: ${entry.default}`;
}

// One setting kept on the server: its value and where it comes from, a field, Save and Clear.
function settingEditor(entry) {
  return serverRow({
    inputType: "text",
    placeholder: `such as ${entry.example}`,
    status: async () => describeSetting((await serverSettings()).find((e) => e.name === entry.name)),
    send: async (value) => {
      const [response, answer] = await postJson(`/sdbridge/settings/${entry.name}`, { value });
      if (!response.ok) return [false, `${entry.label} not saved`, answer.error || response.statusText];
      return [true, entry.label, answer.note || (value ? `saved: ${value}` : "cleared")];
    },
  });
}

const SETTINGS = await serverSettings();

function megabytes(bytes) {
  return `${(Number(bytes || 0) / (1024 * 1024)).toFixed(1)} MB`;
}

async function describeCache() {
  try {
    const response = await api.fetchApi("/sdbridge/result-cache");
    if (!response.ok) return "status unknown";
    const stats = await response.json();
    const held = `${stats.results} ${stats.results === 1 ? "result" : "results"}, ${megabytes(stats.bytes)} of ${megabytes(stats.limit_bytes)}`;
    return stats.enabled ? held : `${held}; the cache is off`;
  } catch (error) {
    return "status unknown";
  }
}

// The result cache: what it holds, and a button that empties it.
function cacheClearer() {
  const row = document.createElement("div");
  row.style.cssText = "display:flex;flex-direction:column;gap:6px;min-width:320px";
  const state = document.createElement("span");
  state.style.opacity = "0.8";
  const clear = Object.assign(document.createElement("button"), { textContent: "Clear the result cache" });
  const refresh = async () => { state.textContent = await describeCache(); };
  clear.onclick = async () => {
    const [response, answer] = await postJson("/sdbridge/result-cache/clear", {});
    if (response.ok) toast("success", "Result cache cleared", `removed ${answer.files} files (${megabytes(answer.bytes)})`);
    else toast("error", "Result cache not cleared", answer.error || response.statusText);
    await refresh();
  };
  row.append(state, clear);
  refresh();
  return row;
}

// What a failed hosted node tells the page ("sdbridge.failed": the error's type and fields, as
// nodes/errors.py makes them), mapped to a short toast that names the fix: [title, text, life].
// It reads the type and fields, never the message's words; ComfyUI's error card shows those.
const OUT_OF_CREDITS = new Set([402, 406]);

function explain(failure) {
  const provider = PROVIDERS.find((p) => p.id === failure?.provider);
  if (!provider) return null;
  const title = (what) => `${provider.name}: ${what}`;
  if (failure.error === "MissingKeyError") {
    return [title("no API key"), `Set ${provider.key_env} before starting ComfyUI, or paste the key in Settings → SD Bridge.`];
  }
  if (failure.maybe_charged) {
    const request = failure.request_id ? ` (request ${failure.request_id})` : "";
    return [title("may have been charged"), `The request${request} may have run and been billed, so it was not sent ` +
      `again. Check your usage at ${failure.billing_page || provider.billing_page} before running again.`, 15000];
  }
  if (failure.status === 401) return [title("key refused"), "Paste a valid key in Settings → SD Bridge."];
  if (OUT_OF_CREDITS.has(failure.status)) return [title("out of credits"), `Top up at ${provider.billing_page}, then run again.`];
  return null;
}

const keyRows = PROVIDERS.map((provider) => ({
  id: `SDBridge.Keys.${provider.name}`,
  category: ["SD Bridge", "Keys", provider.name],
  name: `${provider.name} ${provider.key_label}`,
  tooltip: `Or set ${provider.key_env} before starting ComfyUI. Stored in ComfyUI/user/sdbridge/keys.json on the server (owner-only). Never saved in workflows.`,
  type: keyEditor(provider),
  defaultValue: undefined,
}));
const settingRows = SETTINGS.map((entry) => ({
  id: `SDBridge.Setting.${entry.name}`,
  category: ["SD Bridge", ...entry.section],
  name: entry.label,
  tooltip: `${entry.help} Or set ${entry.name} before starting ComfyUI, which wins over a value saved here.`,
  type: settingEditor(entry),
  defaultValue: undefined,
}));
const cacheRow = {
  id: "SDBridge.ResultCache.Clear",
  category: ["SD Bridge", "Result cache", "Clear"],
  name: "Clear the result cache",
  tooltip: "Removes every stored result (ComfyUI/user/sdbridge/result_cache); the next run of each asks the provider again.",
  type: cacheClearer,
  defaultValue: undefined,
};

app.registerExtension({
  name: "SDBridge.KeysAndCredits",
  settings: [...keyRows, ...settingRows, cacheRow],
  async setup() {
    api.addEventListener("sdbridge.credits", ({ detail }) => {
      credits[detail.provider] = detail.remaining;
    });
    api.addEventListener("sdbridge.failed", ({ detail }) => {
      const found = explain(detail);
      if (found) toast("warn", ...found);
    });
  },
});
