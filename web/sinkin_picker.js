// SD Bridge: a small dialog that shows SinkIn's models or LoRAs as a grid of cover pictures,
// filtered by text; a click sets the node's combo. Plain DOM, no ComfyUI import: the catalog
// extension (sinkin_catalog.js) opens it. Titles and ids are shown as text only (textContent,
// never markup), the id always in view; a picture comes only from the pack's own route.

let open = null; // the dialog on screen: { overlay, close }

const element = (tag, style = {}) => {
  const made = document.createElement(tag);
  Object.assign(made.style, style);
  return made;
};

function tile(entry, coverURL, chosen, pick) {
  const button = element("button", {
    display: "flex", flexDirection: "column", alignItems: "center", gap: "4px", padding: "6px",
    cursor: "pointer", background: "var(--comfy-input-bg, #222)", color: "var(--input-text, #ddd)",
    border: chosen ? "2px solid var(--p-primary-color, #4a9eff)" : "1px solid var(--border-color, #444)",
    borderRadius: "6px", minWidth: "0",
  });
  button.type = "button";
  button.title = entry.choice;
  const frame = element("div", {
    width: "128px", height: "128px", display: "flex", alignItems: "center", justifyContent: "center",
    background: "#0003", borderRadius: "4px", overflow: "hidden", fontSize: "11px", opacity: "0.9",
  });
  const url = entry.cover ? coverURL(entry.id) : null;
  if (url) {
    const picture = element("img", { maxWidth: "128px", maxHeight: "128px" });
    picture.alt = "";
    picture.loading = "lazy";
    picture.decoding = "async";
    // A cover SinkIn could not give: the tile keeps its title and id.
    picture.addEventListener("error", () => { picture.style.display = "none"; frame.textContent = "no picture"; });
    picture.src = url;
    frame.append(picture);
  } else {
    frame.textContent = "no picture";
  }
  const title = element("span", { fontSize: "12px", maxWidth: "128px", overflowWrap: "anywhere" });
  title.textContent = entry.title || entry.id;
  const id = element("span", { fontSize: "11px", opacity: "0.7", fontFamily: "monospace" });
  id.textContent = entry.id;
  button.append(frame, title, id);
  button.addEventListener("click", () => pick(entry.choice));
  return { button, text: `${entry.title} ${entry.id}`.toLowerCase() };
}

// The tile of the combo's value: its choice, else its id as the server reads one from a value
// (catalog.id_from_choice: "Any Title (id)" or a bare id), so a workflow saved under an older
// title still shows which model it runs.
function isCurrent(entry, current) {
  if (entry.choice === current) return true;
  const value = typeof current === "string" ? current.trim() : "";
  return value === entry.id || value.endsWith(`(${entry.id})`);
}

export function closePicker() {
  open?.close();
}

// entries: [{ id, title, choice, cover }]; coverURL(id): the pack's route for that id (null: no
// pictures); current: the combo's value; pick(choice): what a click does.
export function openPicker({ heading, entries, coverURL, current, pick }) {
  closePicker();
  const overlay = element("div", {
    position: "fixed", inset: "0", background: "rgba(0,0,0,0.5)", zIndex: "10000",
    display: "flex", alignItems: "center", justifyContent: "center",
  });
  const box = element("div", {
    background: "var(--comfy-menu-bg, #333)", color: "var(--fg-color, #eee)", padding: "12px",
    borderRadius: "8px", width: "min(860px, 92vw)", maxHeight: "86vh", display: "flex",
    flexDirection: "column", gap: "8px",
  });
  const title = element("div", { fontWeight: "bold" });
  title.textContent = heading;
  const filter = element("input", { padding: "4px 8px" });
  filter.type = "search";
  filter.placeholder = "filter by title or id";
  const grid = element("div", {
    display: "grid", gridTemplateColumns: "repeat(auto-fill, minmax(150px, 1fr))", gap: "8px",
    overflowY: "auto", maxHeight: "70vh",
  });
  const close = () => {
    overlay.remove();
    document.removeEventListener("keydown", onKey, true);
    if (open?.overlay === overlay) open = null;
  };
  const onKey = (event) => { if (event.key === "Escape") close(); };
  const choose = (choice) => { close(); pick(choice); };
  const tiles = entries.map((entry) => tile(entry, coverURL, isCurrent(entry, current), choose));
  grid.append(...tiles.map((t) => t.button));
  // An empty grid alone reads like a list that did not load.
  const nothing = element("div", { display: "none", opacity: "0.8", padding: "8px 0" });
  filter.addEventListener("input", () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const t of tiles) {
      const match = words.every((w) => t.text.includes(w));
      t.button.style.display = match ? "" : "none";
      shown += match ? 1 : 0;
    }
    nothing.style.display = shown ? "none" : "";
    nothing.textContent = shown ? "" : `Nothing matches "${filter.value.trim()}": type part of a title or an id, `
      + `or clear the box to see all ${tiles.length}.`;
  });
  overlay.addEventListener("click", (event) => { if (event.target === overlay) close(); });
  document.addEventListener("keydown", onKey, true);
  box.append(title, filter, nothing, grid);
  overlay.append(box);
  document.body.append(overlay);
  filter.focus?.();
  open = { overlay, close };
  return open;
}
