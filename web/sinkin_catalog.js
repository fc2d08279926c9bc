// SD Bridge: keeps the SinkIn nodes' model and LoRA lists up to date with SinkIn's catalog.
// The list comes from the pack's route (cached server-side, with a bundled fallback), and so
// does which widget of which node shows which list; a value that is not in today's list stays
// as it is, so saved workflows keep working. Each list can also be picked by picture: a button
// (never saved with the workflow, never sent with the prompt) opens sinkin_picker.js's grid.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { openPicker } from "./sinkin_picker.js";

let catalog = null;

const catalogWidgets = (nodeClass) => catalog?.nodes?.[nodeClass];

function applyCatalog(node) {
  for (const [name, list] of Object.entries(catalogWidgets(node.comfyClass) ?? {})) {
    const widget = node.widgets?.find((w) => w.name === name);
    const values = catalog[list];
    if (widget && values?.length) widget.options.values = values;
  }
}

const LIST_NAMES = { models: "model", loras: "LoRA" };

// The pack's own cover route for an id; null when the server names none of its own.
function coverURL(id) {
  const route = catalog?.cover_route;
  if (typeof route !== "string" || !route.startsWith("/sdbridge/")) return null;
  const path = route + encodeURIComponent(id);
  return api.apiURL ? api.apiURL(path) : path;
}

function pickByPicture(node, name, list) {
  const widget = node.widgets?.find((w) => w.name === name);
  if (!widget || !catalog) return;
  let entries = catalog.pictures?.[list] ?? [];
  if (list === "loras" && catalog.loras?.length) {  // the list's first choice is "no LoRA"
    entries = [{ id: catalog.loras[0], title: "no LoRA", choice: catalog.loras[0], cover: false }, ...entries];
  }
  openPicker({
    heading: `SinkIn ${LIST_NAMES[list] ?? list}: pick by picture`, entries, current: widget.value,
    coverURL: (id) => coverURL(id),
    pick(choice) {
      widget.value = choice;
      widget.callback?.(choice, app.canvas, node);
      node.setDirtyCanvas?.(true, true);
    },
  });
}

function addPickButtons(node) {
  if (!node.addWidget || node.sdbridgePickButtons) return;
  node.sdbridgePickButtons = true;
  for (const [name, list] of Object.entries(catalogWidgets(node.comfyClass) ?? {})) {
    // Last, after every input: saved widget values keep their places.
    const button = node.addWidget("button", `pick ${LIST_NAMES[list] ?? list} by picture`, null,
      () => pickByPicture(node, name, list), { serialize: false });
    if (button) button.serialize = false;
  }
}

function catalogNodes() {
  const nodes = app.graph?.nodes ?? app.graph?._nodes ?? [];
  return nodes.filter((node) => catalogWidgets(node.comfyClass));
}

function notify(severity, detail) {
  const toast = app.extensionManager?.toast;
  if (toast) toast.add({ severity, summary: "SinkIn catalog", detail, life: 5000 });
  else console[severity === "error" ? "warn" : "info"](`SinkIn catalog: ${detail}`);
}

// mode: "cached" answers at once from the server's copy; "auto" reads SinkIn when the copy is
// old and a key is set; "refresh" reads SinkIn now.
async function loadCatalog(mode) {
  const query = { cached: "?cached=1", auto: "", refresh: "?refresh=1" }[mode];
  const response = await api.fetchApi(`/sdbridge/sinkin/catalog${query}`);
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  catalog = await response.json();
  catalogNodes().forEach(applyCatalog);
  app.graph?.setDirtyCanvas?.(true, true);
  if (catalog.error) notify("error", catalog.error);
  else if (mode === "refresh") notify("success", `${catalog.models.length} models, ${catalog.loras.length - 1} LoRAs`);
}

function refreshFromMenu() {
  loadCatalog("refresh").catch((error) => notify("error", `could not refresh: ${error.message}`));
}

// Before the node definitions register: which nodes get the refresh menu comes from the server.
try {
  await loadCatalog("cached");
} catch (error) {
  console.warn("SinkIn catalog: could not load the model list", error);
}

app.registerExtension({
  name: "sdbridge.sinkin.catalog",
  async setup() {
    try {
      await loadCatalog("auto");
    } catch (error) {
      console.warn("SinkIn catalog: could not load the model list", error);
    }
  },
  nodeCreated(node) {
    if (!catalogWidgets(node.comfyClass)) return;
    applyCatalog(node);
    addPickButtons(node);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!catalogWidgets(nodeData.name)) return;
    const previous = nodeType.prototype.getExtraMenuOptions;
    nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
      previous?.apply(this, arguments);
      options.push({ content: "Refresh SinkIn models and LoRAs", callback: refreshFromMenu });
      for (const [name, list] of Object.entries(catalogWidgets(this.comfyClass) ?? {})) {
        options.push({ content: `Pick ${LIST_NAMES[list] ?? list} by picture…`,
          callback: () => pickByPicture(this, name, list) });
      }
    };
  },
});
