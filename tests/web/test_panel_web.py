"""web/sdbridge_panel.js in Node.js: the SD Bridge panel as a sidebar tab (or a floating panel on
frontends without sidebar tabs), fed the very answers the pack's routes give: today's spend per
provider, balances, the recent runs newest first with the runs still going, live updates from
events, the seed put back into its node, the usage page of a run that may have been charged,
and every text set as text (a hostile message stays text)."""

from __future__ import annotations

import json

import pytest
from support.serving import call, serve
from support.webjs import NODE_JS, ROOT, run_extension

from sdbridge.nodes.hosted.money import ledger
from sdbridge.nodes.hosted.store import receipts

pytestmark = pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")

HOSTILE = '<img src=x onerror="alert(1)">'

DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
const element = (tag) => ({ tag, children: [], style: { cssText: "" }, dataset: {}, textContent: "", innerHTML: "",
  append(...kids) { this.children.push(...kids); }, replaceChildren() { this.children = []; } });
const body = element("body");
globalThis.document = { createElement: element, body };
const opened = [];
globalThis.open = (...args) => opened.push(args);
const answers = JSON.parse(process.argv[2]);
api.answers = answers.routes;
const seedWidget = { name: "seed", value: -1 }, control = { name: "control_after_generate", value: "randomize" };
app.graph.nodes = [{ id: 7, widgets: [{ name: "prompt", value: "a cat" }, seedWidget, control] }];
const tabs = [];
if (answers.sidebar) app.extensionManager.registerSidebarTab = (tab) => tabs.push(tab);
const panel = await import("./extensions/sdbridge/sdbridge_panel.js");
const extension = app.extensions.find((e) => e.name === "SDBridge.Panel");
await extension.setup();
const root = tabs.length ? element("div") : body.children.find((c) => c.id === "sdbridge-panel");
if (tabs.length) tabs[0].render(root);
await panel.refresh();
const texts = (node) => [node.textContent, ...node.children.flatMap(texts)].filter(Boolean);
const buttons = (node) => [...(node.tag === "button" ? [node] : []), ...node.children.flatMap(buttons)];
const out = { tab: tabs.map((t) => [t.id, t.title, t.type]), floating: body.children.map((c) => c.id),
              texts: texts(root), statuses: root.children.filter((c) => c.dataset?.status).map((c) => c.dataset.status),
              innerHTML: JSON.stringify(root).includes('"innerHTML":"<') };
const labels = buttons(root).map((b) => b.textContent);
out.labels = labels;
out.rootStyle = root.style.cssText;
buttons(root).find((b) => b.textContent.startsWith("Use seed")).onclick();
out.seed = [seedWidget.value, control.value];
buttons(root).find((b) => b.textContent === "Open usage page").onclick();
await panel.fetchAgain(panel.runsToShow(answers.routes["/sdbridge/receipts?limit=30"].receipts)[1]);
out.fetchCalls = api.calls.filter((c) => Array.isArray(c));
out.fetched = texts(root).filter((t) => t.startsWith("No new generation request"));
out.opened = opened;
api.answers = answers.later;
api.emit("sdbridge.credits", { provider: "segmind", remaining: "41" });
out.balance = texts(root).filter((t) => t.startsWith("Segmind:") && t.includes("today"));
api.emit("sdbridge.receipt", answers.later["/sdbridge/receipts?limit=30"].receipts[0]);
await new Promise((resolve) => setTimeout(resolve, 50));
out.live = root.children.filter((c) => c.dataset?.status).map((c) => c.dataset.status);
console.log(JSON.stringify(out));
process.exit(0);
"""


def _record(status: str, seed: int | None, message: str = "done", node_id: str = "7", **more) -> dict:
    fields = dict(provider="segmind", endpoint="sdxl1.0-realvis", node_id=node_id, title="RealVis", prompt_id="p1",
                  inputs={"prompt": "a cat"}, image_digests=[], seed=seed, request_ids=[f"req-{seed}"], status=status,
                  message=message, credits=None if status == "failed" else 0.4, basis="estimated", returned=[])
    return receipts.make(**{**fields, **more})


def _routes() -> dict:
    async def script(session, base):
        spending = json.loads((await call(session, "GET", f"{base}/sdbridge/spending"))[1])
        runs = json.loads((await call(session, "GET", f"{base}/sdbridge/receipts?limit=30"))[1])
        return {"/sdbridge/spending": spending, "/sdbridge/receipts?limit=30": runs}

    return serve(script)


def _answers() -> dict:
    ledger.record("segmind", 1.5)
    ledger.record("sinkin", 0.25)
    receipts.write(_record("maybe_charged", 11, message=f"Segmind: the answer was lost; {HOSTILE}", node_id="9"))
    receipts.write(_record("done", 12, remaining="97"))
    first = _routes()
    first["/sdbridge/receipts/fetch-again"] = {  # the route's answer, as test_receipts_route proves it
        "saved": ["sdbridge/req-11_0.jpg"],
        "note": "No new generation request was sent: Segmind's result of request req-11 was asked again, at no new "
                "charge."}
    receipts.write(_record("cancelled", 13))
    return {"routes": first, "later": _routes()}


@pytest.mark.parametrize("sidebar", [True, False])
def test_the_panel_shows_spend_balances_and_runs_and_acts_on_them(tmp_path, monkeypatch, sidebar):
    monkeypatch.setenv("SDBRIDGE_MAX_CREDITS_PER_DAY", "20")
    answers = _answers()
    out = run_extension(tmp_path, "sdbridge_panel.js", DRIVER, {**answers, "sidebar": sidebar})
    if sidebar:
        assert out["tab"] == [["sdbridge", "SD Bridge", "custom"]]
    else:
        assert out["tab"] == [] and out["floating"] == ["sdbridge-panel", "sdbridge-panel-button"]
    assert "Segmind: 1.5 credits (US$) today of 20 a day · 97 left" in out["texts"]
    assert "SinkIn: 0.25 credits today of 20 a day" in out["texts"]  # each provider's own figure
    assert "overflow-wrap:anywhere" in out["rootStyle"]  # long request ids wrap in a narrow sidebar
    assert out["statuses"] == ["done", "maybe_charged"]  # newest first
    assert "done · RealVis" in out["texts"] and "may have been charged · RealVis" in out["texts"]
    assert "sdxl1.0-realvis · seed 12 · 0.4 cr (estimated)" in out["texts"]
    assert any(HOSTILE in text for text in out["texts"]) and not out["innerHTML"]  # stays text
    # node 7 is in the graph (its seed can go back); node 9 is not; only the charged run has a usage page
    assert out["labels"] == ["Use seed 12", "Fetch again (no new charge)", "Open usage page"]
    assert out["fetchCalls"] == [["/sdbridge/receipts/fetch-again", "POST", {"request_id": "req-11"}]]
    assert out["fetched"] == [answers["routes"]["/sdbridge/receipts/fetch-again"]["note"]
                              + " Saved: sdbridge/req-11_0.jpg"]
    assert out["seed"] == [12, "fixed"]
    assert out["opened"] == [["https://cloud.segmind.com/console/billing", "_blank", "noopener"]]
    assert out["balance"] == ["Segmind: 1.5 credits (US$) today of 20 a day · 41 left"]
    assert out["live"] == ["cancelled", "done", "maybe_charged"]


def test_runs_still_going_show_first_after_a_reload(tmp_path):
    answers = _answers()
    answers["routes"]["/sdbridge/receipts?limit=30"]["in_flight"] = [
        {"provider": "sinkin", "endpoint": "inference/x", "node_id": "8", "title": "SinkIn", "prompt_id": "p2",
         "started": "2026-12-06T01:00:00+00:00"}]
    out = run_extension(tmp_path, "sdbridge_panel.js", DRIVER, {**answers, "sidebar": True})
    assert out["statuses"] == ["running", "done", "maybe_charged"] and "running · SinkIn" in out["texts"]


def test_the_panel_sets_no_html():
    source = (ROOT / "web" / "sdbridge_panel.js").read_text(encoding="utf-8")
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source
