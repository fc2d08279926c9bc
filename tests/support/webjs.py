"""Runs the pack's web extension modules in Node.js against small stand-ins for the ComfyUI
frontend's `app` and `api` modules (the same import paths the real frontend serves)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

NODE_JS = shutil.which("node")

APP = """export const app = {
  extensions: [], toasts: [], graph: { nodes: [], setDirtyCanvas() {} },
  extensionManager: { toast: { add: (toast) => app.toasts.push(toast) } },
  registerExtension(extension) { this.extensions.push(extension); },
};"""
API = """export const api = {
  calls: [], answers: {}, listeners: {},
  async fetchApi(path, options) {
    this.calls.push(options?.body ? [path, options.method, JSON.parse(options.body)] : path);
    return { ok: true, status: 200, json: async () => this.answers[path] };
  },
  addEventListener(name, listener) { (this.listeners[name] ||= []).push(listener); },
  emit(name, detail) { for (const listener of this.listeners[name] || []) listener({ detail }); },
};"""


# A tiny DOM for drivers that render settings rows: plain elements with children, values and
# click handlers. A line `${DOM}` in a driver is replaced by it.
DOM = """const element = (tag) => ({ tag, children: [], style: {}, value: "", textContent: "",
  append(...kids) { this.children.push(...kids); } });
globalThis.document = { createElement: element };"""


def run_extension(tmp_path: Path, extension: str, driver: str, answers: dict) -> dict:
    """Copy web/<extension> (and the sibling modules it imports) beside the stand-ins, run
    `driver` (an ES module that prints JSON) with `answers` (path -> JSON body) for
    api.fetchApi, and return what it printed."""
    assert (ROOT / "web" / extension).is_file(), extension
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP)
    (tmp_path / "scripts" / "api.js").write_text(API)
    (tmp_path / "extensions" / "sdbridge").mkdir(parents=True)
    for module in (ROOT / "web").glob("*.js"):  # the extension, and the modules it imports
        shutil.copy(module, tmp_path / "extensions" / "sdbridge")
    (tmp_path / "driver.mjs").write_text(driver.replace("${DOM}", DOM))
    out = subprocess.run([NODE_JS, "driver.mjs", json.dumps(answers)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)
