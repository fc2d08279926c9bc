// SD Bridge: keeps the SinkIn nodes' model and LoRA lists up to date with SinkIn's catalog.
// The list comes from the pack's route (cached server-side, with a bundled fallback); a value
// that is not in today's list stays as it is, so saved workflows keep working.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SINKIN_NODES = new Set(["SDBridgeSinkInTxt2Img", "SDBridgeSinkInImg2Img"]);
let catalog = null;

function applyCatalog(node) {
  for (const [name, values] of [["model_id", catalog.models], ["lora", catalog.loras]]) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget && values?.length) widget.options.values = values;
  }
}

function sinkinNodes() {
  const nodes = app.graph?.nodes ?? app.graph?._nodes ?? [];
  return nodes.filter((node) => SINKIN_NODES.has(node.comfyClass));
}

function notify(severity, detail) {
  const toast = app.extensionManager?.toast;
  if (toast) toast.add({ severity, summary: "SinkIn catalog", detail, life: 5000 });
  else console[severity === "error" ? "warn" : "info"](`SinkIn catalog: ${detail}`);
}

async function loadCatalog(refresh) {
  const response = await api.fetchApi(`/sdbridge/sinkin/catalog${refresh ? "?refresh=1" : ""}`);
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  catalog = await response.json();
  sinkinNodes().forEach(applyCatalog);
  app.graph?.setDirtyCanvas?.(true, true);
  if (catalog.error) notify("error", catalog.error);
  else if (refresh) notify("success", `${catalog.models.length} models, ${catalog.loras.length - 1} LoRAs`);
}

function refreshFromMenu() {
  loadCatalog(true).catch((error) => notify("error", `could not refresh: ${error.message}`));
}

app.registerExtension({
  name: "sdbridge.sinkin.catalog",
  async setup() {
    try {
      await loadCatalog(false);
    } catch (error) {
      console.warn("SinkIn catalog: could not load the model list", error);
    }
  },
  nodeCreated(node) {
    if (catalog && SINKIN_NODES.has(node.comfyClass)) applyCatalog(node);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SINKIN_NODES.has(nodeData.name)) return;
    const previous = nodeType.prototype.getExtraMenuOptions;
    nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
      previous?.apply(this, arguments);
      options.push({ content: "Refresh SinkIn models and LoRAs", callback: refreshFromMenu });
    };
  },
});
