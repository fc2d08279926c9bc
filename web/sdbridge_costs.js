// SD Bridge: what the graph will cost before Run, and what it spent after.
// Each hosted node shows its estimate in its title bar, updated as its widgets change; the total
// for the whole graph (and the caps in force) sits by the Run button. The numbers come from the
// pack's route (POST /sdbridge/estimate), which prices the same API prompt Run would queue.
// After a run each node shows what it actually spent (the "sdbridge.spent" event).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SKIPPED_MODES = { 2: "muted", 4: "bypassed" };  // the graph's modes for nodes that do not run
const CHECK_EVERY_MS = 1000;  // how often the graph is compared with what was last priced

const state = { answer: null, spent: {}, signature: "", pill: null };

export function formatCredits(credits) {
  if (credits === 0) return "0";
  return Number(credits.toPrecision(3)).toString();
}

// "1 credit", "2 credits (US$)": each figure in its provider's unit (the route says which).
const amount = (n, unit = "credits") => `${formatCredits(n)} ${n === 1 ? unit.replace(/^credits/, "credit") : unit}`;

// What a node's badge says: what it spent after a run, else its estimate; null for no badge.
export function badgeText(estimate, spent) {
  const dollars = (unit) => String(unit ?? "").includes("US$");  // Segmind's credits are dollars
  if (spent) return spent.credits === null ? "spent ?" : `spent ${dollars(spent.unit) ? "$" : ""}${formatCredits(spent.credits)}`;
  if (!estimate) return null;
  if (estimate.basis.startsWith("bypassed") || estimate.basis.startsWith("muted")) return null;
  if (estimate.basis.startsWith("cached")) return "cached · 0";
  if (estimate.credits === null) return "cost ?";
  return dollars(estimate.unit) ? `≈ $${formatCredits(estimate.credits)}` : `≈ ${formatCredits(estimate.credits)} cr`;
}

// One provider's part of the line: "Segmind ≈ 0.01 credits (US$) + 1 unknown" (no name when alone).
function providerText(entry, alone) {
  const name = alone ? "" : `${entry.name} `;
  const unknown = entry.unknown?.length ?? 0;
  if (entry.total === null) return `${name}cost unknown`;
  return `${name}≈ ${amount(entry.total, entry.unit)}${unknown ? ` + ${unknown} unknown` : ""}`;
}

// The line by the Run button, and whether a cap will stop the run: {text, title, over}. The
// server decides (answer.verdict); this only shows its figures and its reason.
export function totalText(answer, spent = {}) {
  if (!answer || !Object.keys(answer.nodes ?? {}).length) return null;
  const spentValues = Object.values(spent);
  if (spentValues.length) {
    const byUnit = {};
    for (const s of spentValues) {
      const unit = s.unit ?? "credits";
      byUnit[unit] ??= { known: 0, unknown: 0 };
      if (s.credits === null) byUnit[unit].unknown += 1;
      else byUnit[unit].known += s.credits;
    }
    const parts = Object.entries(byUnit).map(([unit, s]) => `${amount(s.known, unit)}${s.unknown ? ` + ${s.unknown} unknown` : ""}`);
    return { text: `SD Bridge: spent ${parts.join(" · ")}`,
             title: "What the last run's hosted nodes spent (measured, or estimated where the provider does not tell), each in its provider's unit.",
             over: false };
  }
  const providers = Object.values(answer.providers ?? {});
  let text = `SD Bridge: ${providers.map((entry) => providerText(entry, providers.length === 1)).join(" · ")}`;
  const caps = answer.caps ?? {};
  if (caps.per_run !== null && caps.per_run !== undefined) text += ` · cap ${formatCredits(caps.per_run)}/run`;
  if (caps.per_day !== null && caps.per_day !== undefined) {
    const today = Object.entries(answer.providers ?? {}).map(([id, entry]) =>
      `${providers.length === 1 ? "" : `${entry.name} `}${formatCredits(caps.by_provider?.[id]?.spent_today ?? 0)}`);
    text += ` · ${today.join(", ")} of ${formatCredits(caps.per_day)} today`;
  }
  const over = answer.verdict ? !answer.verdict.go : false;
  const lines = Object.entries(answer.nodes).map(([id, e]) => `#${id}: ${e.credits === null ? "?" : amount(e.credits, answer.providers?.[e.provider]?.unit)} (${e.basis})`);
  if (caps.applies_to && (caps.per_run != null || caps.per_day != null)) lines.unshift(`Caps apply to ${caps.applies_to}.`);
  if (over) lines.unshift(answer.verdict.reason);
  return { text: over ? `⚠ ${text}` : text, title: lines.join("\n"), over };
}

// The prompt to price: what Run would queue, plus SD Bridge nodes that are muted or bypassed
// (Run leaves them out; the route prices them at zero so their badge says why).
export function estimatePrompt(output, nodes) {
  const prompt = { ...output };
  for (const node of nodes) {
    const skipped = SKIPPED_MODES[node.mode];
    if (skipped && String(node.comfyClass ?? node.type ?? "").startsWith("SDBridge") && !(node.id in prompt)) {
      prompt[node.id] = { class_type: node.comfyClass ?? node.type, inputs: {}, mode: node.mode };
    }
  }
  return prompt;
}

// What decides the price of the graph's SD Bridge nodes: their modes, widget values and links.
export function graphSignature(nodes) {
  return JSON.stringify(nodes
    .filter((node) => String(node.comfyClass ?? node.type ?? "").startsWith("SDBridge"))
    .map((node) => [node.id, node.mode, (node.widgets ?? []).map((w) => w.value),
                    (node.inputs ?? []).map((input) => input.link ?? null)]));
}

function graphNodes() {
  return app.graph?.nodes ?? app.graph?._nodes ?? [];
}

// Beside the Run button, to its left, when the page has one (frontends since 1.2x mark it;
// below it the frontend shows its own "queued" messages), else bottom right.
function placePill(pill) {
  const run = document.querySelector?.('[data-testid="queue-button"]');
  const bar = run?.closest?.(".actionbar") ?? run;
  const rect = bar?.getBoundingClientRect?.();
  if (rect && rect.width > 0 && globalThis.innerWidth) {
    const height = pill.offsetHeight || 22;
    Object.assign(pill.style, { top: `${Math.round(rect.top + (rect.height - height) / 2)}px`, bottom: "",
                                right: `${Math.round(globalThis.innerWidth - rect.left + 8)}px` });
  } else {
    Object.assign(pill.style, { top: "", bottom: "16px", right: "16px" });
  }
}

function showTotal() {
  if (typeof document === "undefined") return;
  const shown = totalText(state.answer, state.spent);
  if (!state.pill) {
    state.pill = document.createElement("div");
    state.pill.id = "sdbridge-cost-total";
    state.pill.style.cssText = "position:fixed;z-index:1300;padding:4px 10px;border-radius:12px;"
      + "font:12px sans-serif;color:#fff;background:#2b5f3f;pointer-events:auto;cursor:default";
    document.body?.append(state.pill);
  }
  state.pill.style.display = shown ? "block" : "none";
  if (!shown) return;
  placePill(state.pill);
  state.pill.textContent = shown.text;
  state.pill.title = shown.title;
  state.pill.style.background = shown.over ? "#8a2b2b" : "#2b5f3f";
}

// Price the graph again when what decides the price changed (or when `force`d).
export async function refreshEstimates(force = false) {
  const nodes = graphNodes();
  const signature = graphSignature(nodes);
  if (!force && signature === state.signature) return state.answer;
  if (signature !== state.signature) state.spent = {};  // an edited graph: estimates again, not the last spend
  state.signature = signature;
  try {
    const { output } = await app.graphToPrompt();
    const response = await api.fetchApi("/sdbridge/estimate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: estimatePrompt(output ?? {}, nodes) }),
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    state.answer = await response.json();
  } catch (error) {
    console.warn("[SD Bridge] the cost estimate could not be read", error);
    state.answer = null;
  }
  showTotal();
  app.graph?.setDirtyCanvas?.(true, true);
  return state.answer;
}

export function badgeFor(nodeId) {
  const estimate = state.answer?.nodes?.[String(nodeId)];
  const unit = state.answer?.providers?.[estimate?.provider]?.unit;
  return badgeText(estimate && { ...estimate, unit }, state.spent[String(nodeId)]);
}

function drawBadge(node, ctx) {
  const text = badgeFor(node.id);
  if (!text || node.flags?.collapsed) return;
  const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "11px sans-serif";
  const width = ctx.measureText(text).width + 12;
  const x = node.size[0] - width - 6;
  const y = -titleHeight + (titleHeight - 18) / 2;
  ctx.fillStyle = text.startsWith("spent") ? "#35507a" : text.includes("?") ? "#5a5a5a" : "#2b5f3f";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, 18, 9);
  else ctx.rect(x, y, width, 18);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + 6, y + 9);
  ctx.restore();
}

app.registerExtension({
  name: "SDBridge.Costs",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData?.name ?? "").startsWith("SDBridge")) return;
    const original = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const result = original?.call(this, ctx, ...rest);
      drawBadge(this, ctx);
      return result;
    };
  },
  async setup() {
    api.addEventListener("execution_start", () => {
      state.spent = {};
      state.signature = graphSignature(graphNodes());  // the seeds Run just changed are not an edit
      showTotal();
    });
    api.addEventListener("sdbridge.spent", ({ detail }) => {
      state.spent[String(detail.node)] = { credits: detail.credits ?? null, basis: detail.basis, unit: detail.unit };
      showTotal();
      app.graph?.setDirtyCanvas?.(true, false);
    });
    // A run changes what is measured and spent today: price again once it ends.
    api.addEventListener("execution_success", () => refreshEstimates(true));
    setInterval(() => {
      refreshEstimates();
      if (state.pill?.style.display === "block") placePill(state.pill);  // the action bar can be dragged
    }, CHECK_EVERY_MS);
  },
});
