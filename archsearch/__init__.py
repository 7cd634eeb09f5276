"""archsearch: network pruning as architecture search.

Liu et al., "Rethinking the Value of Network Pruning" (ICLR 2019), Section 5: what a
pruner finds is an architecture. archsearch proposes architectures with pruners,
extracts their per-layer and per-stage patterns, generates new networks from them at
matched budgets, trains them from scratch and compares them.

Import direction (bottom to top): errors/_io -> families -> spec -> archs -> counting -> names ->
data -> train -> cli.
"""

__version__ = "0.1.0"
