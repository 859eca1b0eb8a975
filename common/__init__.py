"""Small utilities every layer may use, below everything: they import nothing of mcpgym.

- `cli`: one-line errors with exit code 2, `run_cli`, the shared help formatter.
- `flags`: the flags mcpgym's CLIs share, one meaning each (the README's "Flags" table).
- `home`: the cache root (`$MCPGYM_HOME`) and the lock that guards filling it.
- `redact`: what a URL, a command or an error's text may show in a log, a report or a record.
"""
