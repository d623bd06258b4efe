"""One module per chapter: compute functions returning tidy tables (``docs/architecture.md``, "Layers")."""
