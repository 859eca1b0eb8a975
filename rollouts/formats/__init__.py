"""The export formats, one module per consumer (`rollouts.export` is the CLI over them and keeps
every name importable from there):

- `base`: format names and old aliases, the reasons counted in `ExportResult`, `Unexpressible`,
  `export_messages` and the message helpers every converter shares;
- `selection`: which trajectories are exported;
- `llamafactory`, `swift`, `chat` (trl and openai): one record per trajectory, and what was
  changed to fit it;
- `files`: a trajectory file converted to one format, with its counts (`export_file`).
"""
