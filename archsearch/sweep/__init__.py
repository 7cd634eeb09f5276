"""Optuna-managed sweeps: specs (`spec.py`), storages with heartbeats (`storage.py`), the
plan and the worker loop (`runner.py`), the numbers (`results.py`) and the commands
(`cli.py`).

Import direction: sweep sits above compare/generate/train/patterns and below cli.
Nothing is imported here, so `archsearch --help` stays fast.
"""
