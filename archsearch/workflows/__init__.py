"""What the commands do, as library functions: `archsearch.cli` parses options, resolves the
config, calls one of these and prints what it returns; a notebook can call them the same way.

- `workflows.train`: one training run (a target's base net or a spec file, a run folder,
  N processes under torchrun);
- `workflows.extract`: a pruner's proposals over seeds, saved as a library pattern;
- `workflows.transfer`: guided and transferred nets from a pattern at matched budgets, and
  their training;
- `workflows.export`: a run folder's network exported for use without archsearch.
"""
