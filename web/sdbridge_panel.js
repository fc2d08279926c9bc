// SD Bridge panel: today's spend per provider against the caps, each provider's last known
// balance, and the recent hosted runs (their receipts), newest first, with what can be done
// about each: put its seed back into its node, fetch again a result Segmind still holds (its
// result is asked again: no new generation request, no new charge), open the provider's usage
// page for a run that may have been charged. A sidebar tab where the frontend has them (registerSidebarTab), else a
// floating panel opened from a small button. Figures come from the pack's routes
// (/sdbridge/spending, /sdbridge/receipts): the server decides, the panel shows. Every text is
// set with textContent.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const RECENT = 30;  // runs the panel lists
const STATUS_TEXT = { done: "done", cached: "from cache", failed: "failed", maybe_charged: "may have been charged",
                      cancelled: "cancelled", running: "running" };

const FETCHABLE = ["maybe_charged", "cancelled"];  // runs whose result the provider may still hold
// Long words (endpoints, request ids) wrap: a narrow sidebar (frontend 1.27) clipped them.
const FIT = "overflow-wrap:anywhere;font-size:12px";

const state = { spending: null, receipts: [], inFlight: [], roots: new Set(), problem: "", fetched: {} };

export function formatCredits(credits) {
  if (credits === null || credits === undefined) return "?";
  return Number(Number(credits).toPrecision(3)).toString();
}

// One row per provider: "Segmind: 2.5 credits (US$) today of 20 a day · 97 left". Each provider
// in its own unit (two units are never added); the day cap applies to each provider separately
// and compares what the server counts (spent, plus what requests under way hold).
export function spendRows(spending) {
  if (!spending) return [];
  const caps = spending.caps ?? {};
  return (spending.providers ?? []).map((row) => {
    const cap = caps.providers?.[row.id]?.per_day ?? caps.per_day;  // a provider's own cap, where set
    const counted = row.counted_today ?? row.spent_today;
    let text = `${row.name}: ${formatCredits(counted)} ${row.unit ?? "credits"} today`;
    if (cap !== null && cap !== undefined) text += ` of ${formatCredits(cap)} a day`;
    if (row.balance !== null && row.balance !== undefined) text += ` · ${row.balance} left`;
    const over = cap !== null && cap !== undefined && counted >= cap;
    return { id: row.id, text, over, usagePage: row.usage_page };
  });
}

// One row per run: status, model, seed, cost and basis, time and request ids.
export function runRow(receipt) {
  const status = STATUS_TEXT[receipt.status] ?? String(receipt.status);
  const cost = receipt.status === "running" ? "" : ` · ${formatCredits(receipt.credits)} cr (${receipt.basis})`;
  const seed = receipt.seed === null || receipt.seed === undefined ? "" : ` · seed ${receipt.seed}`;
  const time = String(receipt.time ?? receipt.started ?? "").replace("T", " ").slice(0, 19);
  const ids = (receipt.request_ids ?? []).join(", ");
  return { status: receipt.status, head: `${status} · ${receipt.title ?? receipt.endpoint}`,
           detail: `${receipt.endpoint}${seed}${cost}`, time, ids: ids ? `request ${ids}` : "",
           message: receipt.status === "done" || receipt.status === "cached" ? "" : String(receipt.message ?? "") };
}

// Newest first: the runs still going, then the receipts (the route answers them newest first).
export function runsToShow(receipts, inFlight) {
  const running = (inFlight ?? []).map((run) => ({ ...run, status: "running" }));
  return [...running.reverse(), ...(receipts ?? [])].slice(0, RECENT);
}

function graphNode(id) {
  return app.graph?.getNodeById?.(Number(id)) ?? (app.graph?.nodes ?? []).find((n) => String(n.id) === String(id));
}

// What can be done about a run: [{kind, label}] (the node must still be in the graph for its seed).
export function actionsFor(receipt, findNode = graphNode) {
  const actions = [];
  const node = receipt.node_id !== null && receipt.node_id !== undefined ? findNode(receipt.node_id) : null;
  const seedWidget = node?.widgets?.find((w) => w.name === "seed");
  if (Number.isInteger(receipt.seed) && seedWidget) actions.push({ kind: "seed", label: `Use seed ${receipt.seed}` });
  if (receipt.provider === "segmind" && FETCHABLE.includes(receipt.status) && receipt.request_ids?.length) {
    actions.push({ kind: "fetch", label: "Fetch again (no new charge)" });
  }
  if (receipt.status === "maybe_charged") actions.push({ kind: "usage", label: "Open usage page" });
  return actions;
}

// Put the run's seed into its node: a fixed seed (and "fixed" after generation, when the node
// has ComfyUI's control widget), so the next run asks for the same image.
export function useSeed(receipt, findNode = graphNode) {
  const node = findNode(receipt.node_id);
  const widget = node?.widgets?.find((w) => w.name === "seed");
  if (!widget || !Number.isInteger(receipt.seed)) return false;
  widget.value = receipt.seed;
  widget.callback?.(receipt.seed);
  const control = node.widgets.find((w) => w.name === "control_after_generate");
  if (control) control.value = "fixed";
  app.graph?.setDirtyCanvas?.(true, true);
  return true;
}

// Ask the server to fetch a held result again; what it said (saved files, or why not) is shown.
export async function fetchAgain(receipt) {
  const requestId = receipt.request_ids[receipt.request_ids.length - 1];
  const response = await api.fetchApi("/sdbridge/receipts/fetch-again", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ request_id: requestId }) });
  const answer = await response.json();
  state.fetched[requestId] = response.ok ? `${answer.note} Saved: ${answer.saved.join(", ")}` : answer.error;
  render();
  return state.fetched[requestId];
}

function usagePage(provider) {
  return (state.spending?.providers ?? []).find((p) => p.id === provider)?.usage_page ?? null;
}

function element(tag, text, style = "") {
  const made = document.createElement(tag);
  if (text) made.textContent = text;
  if (style) made.style.cssText = style;
  return made;
}

function renderInto(root) {
  root.replaceChildren();
  root.append(element("h3", "Spent today", "margin:8px 0 4px"));
  for (const row of spendRows(state.spending)) {
    root.append(element("div", row.text, row.over ? "color:#e06060" : ""));
  }
  if (state.problem) root.append(element("div", state.problem, "color:#e06060"));
  root.append(element("h3", "Recent runs", "margin:12px 0 4px"));
  const runs = runsToShow(state.receipts, state.inFlight);
  if (!runs.length) root.append(element("div", "No hosted run yet.", "opacity:0.7"));
  for (const receipt of runs) {
    const row = runRow(receipt);
    const box = element("div", "", "border-top:1px solid #444;padding:4px 0");
    if (box.dataset) box.dataset.status = receipt.status;
    box.append(element("div", row.head, "font-weight:bold"), element("div", row.detail),
               element("div", `${row.time}${row.ids ? ` · ${row.ids}` : ""}`, "opacity:0.7;font-size:11px"));
    if (row.message) box.append(element("div", row.message, "font-size:11px;color:#e0a060"));
    const fetched = (receipt.request_ids ?? []).map((id) => state.fetched[id]).find(Boolean);
    if (fetched) box.append(element("div", fetched, "font-size:11px"));
    for (const action of actionsFor(receipt)) {
      const button = element("button", action.label, "margin:2px 4px 0 0;font-size:11px");
      button.onclick = () => {
        if (action.kind === "seed") useSeed(receipt);
        if (action.kind === "fetch") fetchAgain(receipt);
        if (action.kind === "usage") {
          const page = usagePage(receipt.provider);
          if (page) globalThis.open?.(page, "_blank", "noopener");
        }
      };
      box.append(button);
    }
    root.append(box);
  }
}

function render() {
  for (const root of state.roots) renderInto(root);
}

async function getJson(path) {
  const response = await api.fetchApi(path);
  if (!response.ok) throw new Error((await response.json())?.error ?? `status ${response.status}`);
  return response.json();
}

export async function refresh() {
  try {
    const [spending, runs] = await Promise.all([getJson("/sdbridge/spending"),
                                                getJson(`/sdbridge/receipts?limit=${RECENT}`)]);
    Object.assign(state, { spending, receipts: runs.receipts ?? [], inFlight: runs.in_flight ?? [], problem: "" });
  } catch (error) {
    state.problem = `SD Bridge could not read its receipts (${error.message}); they will be read again on the next run.`;
  }
  render();
}

export function mount(root) {
  state.roots.add(root);
  render();
  refresh();
}

// A run ended: its receipt first in the list, its node no longer running.
export function onReceipt(receipt) {
  state.receipts = [receipt, ...state.receipts.filter((r) => r !== receipt)].slice(0, RECENT);
  state.inFlight = state.inFlight.filter((run) => !(run.node_id === receipt.node_id && run.prompt_id === receipt.prompt_id));
  refresh();
}

export function onCredits(detail) {
  const row = (state.spending?.providers ?? []).find((p) => p.id === detail?.provider);
  if (row) row.balance = detail.remaining;
  render();
}

function floatingPanel() {
  const panel = element("div", "", "position:fixed;left:16px;bottom:56px;width:340px;max-height:60vh;overflow:auto;"
    + `z-index:1300;padding:8px;background:#222;color:#ddd;font:12px sans-serif;border-radius:6px;display:none;${FIT}`);
  panel.id = "sdbridge-panel";
  const open = element("button", "SD Bridge", "position:fixed;left:16px;bottom:16px;z-index:1300;font:12px sans-serif");
  open.id = "sdbridge-panel-button";
  open.onclick = () => {
    panel.style.display = panel.style.display === "none" ? "block" : "none";
    if (panel.style.display === "block") refresh();
  };
  document.body?.append(panel, open);
  return panel;
}

app.registerExtension({
  name: "SDBridge.Panel",
  async setup() {
    const manager = app.extensionManager;
    if (typeof manager?.registerSidebarTab === "function") {
      manager.registerSidebarTab({ id: "sdbridge", icon: "pi pi-receipt", title: "SD Bridge",
                                   tooltip: "SD Bridge: spending and recent hosted runs", type: "custom",
                                   render: (root) => {
                                     root.style.cssText += `;${FIT};padding:0 8px`;
                                     mount(root);
                                   } });
    } else if (typeof document !== "undefined") {
      mount(floatingPanel());  // older frontends: no sidebar tabs
    }
    api.addEventListener("sdbridge.receipt", (event) => onReceipt(event.detail));
    api.addEventListener("sdbridge.credits", (event) => onCredits(event.detail));
    api.addEventListener("execution_start", () => refresh());  // the runs now going
  },
});
