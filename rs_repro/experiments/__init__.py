"""One module per chapter: compute functions returning tidy tables (DESIGN.md)."""
