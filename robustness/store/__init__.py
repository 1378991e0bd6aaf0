"""The results store: one SQLite file per project. Its schema, the row codecs, the `Store`
that commits cells and curves exactly once (database) and the exports."""
