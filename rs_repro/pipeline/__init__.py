"""The pipeline: run a chapter (runner, command line, engine, cache), carry results between machines
(``docs/architecture.md``, "Layers")."""
