// SD Bridge web extension: API keys in the Settings dialog, remaining credits, and toasts
// that name the fix when a hosted call fails for a key or for credits.
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

function toast(severity, summary, detail) {
  const toaster = app.extensionManager?.toast;
  if (toaster) toaster.add({ severity, summary, detail, life: 5000 });
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

// One settings row per provider: a status line, a password field, Save and Clear.
function keyEditor(provider) {
  return () => {
    const row = document.createElement("div");
    row.style.cssText = "display:flex;flex-direction:column;gap:6px;min-width:320px";
    const state = document.createElement("span");
    state.style.opacity = "0.8";
    const controls = document.createElement("div");
    controls.style.cssText = "display:flex;gap:6px";
    const input = Object.assign(document.createElement("input"), {
      type: "password", autocomplete: "off", placeholder: `paste your ${provider.name} ${provider.key_label}`,
    });
    input.style.flex = "1";
    const save = Object.assign(document.createElement("button"), { textContent: "Save" });
    const clear = Object.assign(document.createElement("button"), { textContent: "Clear" });
    const refresh = async () => { state.textContent = describe(await keyStatus(), provider); };
    const send = async (key) => {
      const response = await api.fetchApi(`/sdbridge/keys/${provider.id}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ key }),
      });
      const answer = await response.json().catch(() => ({}));
      input.value = "";
      if (!response.ok) toast("error", `${provider.name} key not saved`, answer.error || response.statusText);
      else toast("success", `${provider.name} ${provider.key_label}`, key ? "saved" : "cleared");
      await refresh();
    };
    save.onclick = () => input.value.trim() && send(input.value.trim());
    clear.onclick = () => send("");
    controls.append(input, save, clear);
    row.append(state, controls);
    refresh();
    return row;
  };
}

// What a failed hosted call says, mapped to a short toast that names the fix. The messages
// start with the provider's name ("Segmind: ..."), which finds its row in the provider table.
const FIXES = [
  [/no API key is set/, "no API key", (p) => `Set ${p.key_env} before starting ComfyUI, or paste the key in Settings → SD Bridge.`],
  [/did not accept the API key \(401\)/, "key refused", () => "Paste a valid key in Settings → SD Bridge."],
  [/not enough credits \(406\)|payment is required \(402\)/, "out of credits", (p) => `Top up at ${p.billing_page}, then run again.`],
];

function explain(message) {
  const provider = PROVIDERS.find((p) => message.startsWith(`${p.name}:`));
  if (!provider) return null;
  for (const [pattern, title, fix] of FIXES) {
    if (pattern.test(message)) return [`${provider.name}: ${title}`, fix(provider)];
  }
  return null;
}

app.registerExtension({
  name: "SDBridge.KeysAndCredits",
  settings: PROVIDERS.map((provider) => ({
    id: `SDBridge.Keys.${provider.name}`,
    category: ["SD Bridge", "Keys", provider.name],
    name: `${provider.name} ${provider.key_label}`,
    tooltip: `Or set ${provider.key_env} before starting ComfyUI. Stored in ComfyUI/user/sdbridge/keys.json on the server (owner-only). Never saved in workflows.`,
    type: keyEditor(provider),
    defaultValue: undefined,
  })),
  async setup() {
    api.addEventListener("sdbridge.credits", ({ detail }) => {
      credits[detail.provider] = detail.remaining;
    });
    api.addEventListener("execution_error", ({ detail }) => {
      if (!String(detail?.node_type || "").startsWith("SDBridge")) return;
      const found = explain(String(detail.exception_message || ""));
      if (found) toast("warn", ...found);
    });
  },
});
