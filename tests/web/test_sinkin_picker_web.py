"""Picking a SinkIn model or LoRA by its picture: the catalog extension adds a button per list
(never saved, never sent with the prompt) that opens sinkin_picker.js's grid, fed with the real
route's answer. Run in Node.js with a small DOM whose innerHTML throws, so only text is shown."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import make_mocked_request
from support.webjs import NODE_JS, run_extension

from sdbridge.nodes import routes
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog
from sdbridge.nodes.hosted.providers.sinkin.catalog import Catalog, Entry, clean_title


def cached_answer() -> dict:
    request = make_mocked_request("GET", "/sdbridge/sinkin/catalog?cached=1")
    return json.loads(asyncio.run(routes.sinkin_models(request)).text)


DRIVER = r"""import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
const element = (tag) => {
  const made = { tag, style: {}, children: [], listeners: {}, parent: null, textContent: "", value: "",
    append(...kids) { for (const kid of kids) { kid.parent = this; this.children.push(kid); } },
    remove() { if (this.parent) this.parent.children.splice(this.parent.children.indexOf(this), 1); this.parent = null; },
    addEventListener(name, listener) { (this.listeners[name] ||= []).push(listener); },
    fire(name, event = {}) { for (const listener of this.listeners[name] || []) listener({ target: this, ...event }); },
  };
  Object.defineProperty(made, "innerHTML", { set() { throw new Error("innerHTML was set"); } });
  return made;
};
const keys = [];
globalThis.document = { createElement: element, body: element("body"),
  addEventListener(name, listener) { keys.push(listener); },
  removeEventListener(name, listener) { keys.splice(keys.indexOf(listener), 1); } };
api.answers = JSON.parse(process.argv[2]);
api.apiURL = (path) => "/api" + path;  // as the frontend serves a pack's routes
await import("./extensions/sdbridge/sinkin_catalog.js");
const [extension] = app.extensions;
await extension.setup();
const changes = [];
const combo = (name, value) => ({ name, value, options: { values: [value] }, callback: (v) => changes.push([name, v]) });
const node = { comfyClass: "SDBridgeSinkInTxt2Img", widgets: [combo("model_id", "Realistic Vision V6.0 (r2La2w2)"), combo("lora", "none")],
  addWidget(type, name, value, callback, options) { const w = { type, name, value, callback, options }; this.widgets.push(w); return w; } };
extension.nodeCreated(node);
extension.nodeCreated(node);  // once per node, however often it is called
const walk = (el, found = []) => { found.push(el); for (const kid of el.children) walk(kid, found); return found; };
const tiles = () => walk(document.body).filter((el) => el.tag === "button").map((b) => ({
  img: walk(b).find((el) => el.tag === "img")?.src ?? null, shown: b.style.display !== "none", chosen: b.style.border.startsWith("2px"),
  texts: walk(b).filter((el) => el.tag === "span").map((el) => el.textContent), button: b }));
const plain = (list) => list.map(({ button, ...rest }) => rest);
const result = { widgets: node.widgets.map((w) => [w.name, w.type ?? "combo", w.options?.serialize ?? null, w.serialize ?? null]) };
node.widgets[2].callback();
result.models = plain(tiles());
const filter = walk(document.body).find((el) => el.tag === "input");
const notes = () => walk(document.body).filter((el) => el.tag === "div" && !el.children.length && el.style.display !== "none"
  && el.textContent.startsWith("Nothing")).map((el) => el.textContent);
filter.value = "zz <b>";
filter.fire("input");
result.noMatch = { shown: tiles().filter((t) => t.shown).length, notes: notes() };
filter.value = "dream";
filter.fire("input");
result.filtered = tiles().filter((t) => t.shown).map((t) => t.texts[1]);
result.notesAfterMatch = notes();
tiles().find((t) => t.texts[1] === "4zdwGOB").button.fire("click");
result.afterPick = { model: node.widgets[0].value, changes, open: document.body.children.length };
node.widgets[3].callback();
result.loras = plain(tiles());
keys[0]({ key: "Escape" });
result.afterEscape = { open: document.body.children.length, keys: keys.length, lora: node.widgets[1].value };
const menu = [];
const nodeType = { prototype: {} };
await extension.beforeRegisterNodeDef(nodeType, { name: "SDBridgeSinkInTxt2Img" });
nodeType.prototype.getExtraMenuOptions.call(node, {}, menu);
menu[2].callback();
const shownTiles = tiles().length;
const overlay = document.body.children[0];
overlay.fire("click", { target: overlay.children[0] });  // a click inside the dialog keeps it open
const stillOpen = document.body.children.length;
overlay.fire("click");  // a click beside the dialog closes it
result.menu = { items: menu.map((item) => item.content), tiles: shownTiles, stillOpen, open: document.body.children.length };
console.log(JSON.stringify(result));
"""

HOSTILE = '<img src=x onerror="alert(1)">Grain'


def write_catalog() -> None:
    sinkin_catalog._write_cache(Catalog(
        (Entry("r2La2w2", "Realistic Vision V6.0", "https://cdn.example/c.jpg"), Entry("4zdwGOB", "DreamShaper")),
        (Entry("lora01", clean_title(HOSTILE), "https://cdn.example/l.jpg"),), time.time()))


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_the_picker_shows_covers_from_the_pack_titles_as_text_and_sets_the_combo(tmp_path):
    write_catalog()
    answer = cached_answer()
    result = run_extension(tmp_path, "sinkin_catalog.js", DRIVER, {"/sdbridge/sinkin/catalog?cached=1": answer,
                                                                   "/sdbridge/sinkin/catalog": answer})
    # Two buttons, after every input, kept out of the saved workflow and the prompt.
    assert result["widgets"] == [["model_id", "combo", None, None], ["lora", "combo", None, None],
                                 ["pick model by picture", "button", False, False],
                                 ["pick LoRA by picture", "button", False, False]]
    assert result["models"] == [
        {"img": "/api/sdbridge/sinkin/cover/r2La2w2", "shown": True, "chosen": True,
         "texts": ["Realistic Vision V6.0", "r2La2w2"]},
        {"img": None, "shown": True, "chosen": False, "texts": ["DreamShaper", "4zdwGOB"]}]  # no cover: no picture
    assert result["filtered"] == ["4zdwGOB"]
    assert result["afterPick"] == {"model": "DreamShaper (4zdwGOB)", "changes": [["model_id", "DreamShaper (4zdwGOB)"]],
                                   "open": 0}
    assert result["loras"] == [
        {"img": None, "shown": True, "chosen": True, "texts": ["no LoRA", "none"]},
        {"img": "/api/sdbridge/sinkin/cover/lora01", "shown": True, "chosen": False,
         "texts": [clean_title(HOSTILE), "lora01"]}]
    assert "<" not in result["loras"][1]["texts"][0]
    assert result["afterEscape"] == {"open": 0, "keys": 0, "lora": "none"}
    assert result["menu"] == {"items": ["Refresh SinkIn models and LoRAs", "Pick model by picture…",
                                        "Pick LoRA by picture…"], "tiles": 2, "stillOpen": 1, "open": 0}


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_a_cover_route_that_is_not_the_packs_shows_no_picture(tmp_path):
    write_catalog()
    answer = {**cached_answer(), "cover_route": "https://elsewhere.example/"}
    result = run_extension(tmp_path, "sinkin_catalog.js", DRIVER, {"/sdbridge/sinkin/catalog?cached=1": answer,
                                                                   "/sdbridge/sinkin/catalog": answer})
    assert [tile["img"] for tile in result["models"] + result["loras"]] == [None, None, None, None]


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
@pytest.mark.parametrize("saved", ["Realistic Vision (r2La2w2)", "r2La2w2"])
def test_the_picker_marks_the_saved_model_by_its_id_when_its_title_changed(tmp_path, saved):
    # The shipped workflows name "Realistic Vision (r2La2w2)"; SinkIn's list calls it
    # "Realistic Vision V6.0 (r2La2w2)" (and a bare id works too): the server runs the id, so the
    # picker marks that tile, and only that one.
    write_catalog()
    answer = cached_answer()
    driver = DRIVER.replace('combo("model_id", "Realistic Vision V6.0 (r2La2w2)")', f'combo("model_id", {json.dumps(saved)})')
    assert driver != DRIVER
    result = run_extension(tmp_path, "sinkin_catalog.js", driver, {"/sdbridge/sinkin/catalog?cached=1": answer,
                                                                   "/sdbridge/sinkin/catalog": answer})
    assert [(tile["texts"][1], tile["chosen"]) for tile in result["models"]] == [("r2La2w2", True), ("4zdwGOB", False)]


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_a_filter_that_matches_nothing_says_so_and_how_to_go_on(tmp_path):
    write_catalog()
    answer = cached_answer()
    result = run_extension(tmp_path, "sinkin_catalog.js", DRIVER, {"/sdbridge/sinkin/catalog?cached=1": answer,
                                                                   "/sdbridge/sinkin/catalog": answer})
    # An empty grid alone reads like a list that did not load; the typed text is shown as text.
    assert result["noMatch"] == {"shown": 0, "notes": [
        'Nothing matches "zz <b>": type part of a title or an id, or clear the box to see all 2.']}
    assert result["notesAfterMatch"] == []
