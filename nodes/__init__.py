"""SD Bridge's nodes and everything they use. Importing any module here only defines things: the
pack is wired into ComfyUI by `setup.setup()`, which the pack's entry point calls."""
