// SD Bridge: the Load Checkpoint node lists a checkpoint by its bare file name, as ComfyUI does,
// so that the editor can offer a workflow's download links (it matches them to widget values by
// name). Workflows saved before SD Bridge 0.1.0 spell it "checkpoints/<file>": that spelling is
// rewritten when such a workflow is loaded, before the editor looks for missing models.
// Diffusers folders keep their "diffusers/<folder>" entries.
import { app } from "../../scripts/app.js";

const LOADER = "SDBridgeLoadCheckpoint";
const EARLIER_PREFIX = "checkpoints/";

function renameIn(node) {
  if (node?.type !== LOADER || node.widgets_values == null) return;
  const values = node.widgets_values;
  const key = Array.isArray(values) ? 0 : "model";
  const value = values[key];
  if (typeof value === "string" && value.startsWith(EARLIER_PREFIX)) values[key] = value.slice(EARLIER_PREFIX.length);
}

app.registerExtension({
  name: "sdbridge.checkpoint.names",
  beforeConfigureGraph(graph) {
    for (const node of graph?.nodes ?? []) renameIn(node);
    for (const subgraph of graph?.definitions?.subgraphs ?? []) for (const node of subgraph?.nodes ?? []) renameIn(node);
  },
});
