"""Optuna-managed sweeps: specs (`spec.py`), storages with heartbeats (`storage.py`), the
plan and the worker loop (`runner.py`), the numbers (`results.py`) and the commands
(`cli.py`).

Import direction: sweep sits above compare/generate/train/patterns and below cli.
Nothing is imported here, so `archsearch --help` stays fast.
"""

# Where every sweep command reads its storage URL when --storage is not given: a URL with a
# password belongs in the environment (readable by this user only), not on a command line.
STORAGE_ENV = "ARCHSEARCH_STORAGE"
