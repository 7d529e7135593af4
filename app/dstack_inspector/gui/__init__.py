"""The PySide6 GUI of dstack-inspector: a thin layer over `dstack_verifier` (which never imports Qt)."""
