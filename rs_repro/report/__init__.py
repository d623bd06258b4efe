"""The report: the records a chapter keeps, the statistics of a verdict, figures, generated prose, the
paper's own numbers, text from elsewhere made safe for a page (``docs/architecture.md``, "Layers")."""
