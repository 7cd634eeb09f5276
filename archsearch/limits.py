"""Finite ranges for every number that enters archsearch (command-line options, file
fields): the one home of the bounds, read by the CLI's option types and by the file
schemas (`archsearch/schemas/`). They refuse nonsense (a width of 10^6 channels, a seed of 2^64,
10^20 epochs) before any work; whether a valid network fits in memory is checked
separately, before training (`train.check_memory`)."""

MAX_WIDTH = 1 << 16          # channels of one layer
MAX_INPUT = 4096             # image side in pixels
MAX_CLASSES = 1 << 20
MAX_LAYERS = 10_000
MAX_SEED = 2 ** 32 - 1       # numpy and torch seeds
MAX_SEEDS = 1000             # seeds per experiment
MAX_EPOCHS = 100_000
MAX_BUDGET = 1e15            # params or MACs
MAX_WIDTH_MULT = 16.0        # width multiplier of a base net
MAX_ROUND = 1024             # --round: widths rounded to multiples of this
MAX_CAP = 1000.0             # Scratch-B epoch factor cap
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_LATENCY_BATCH = 4096     # images per forward pass a latency is measured at
MAX_REPEATS = 10_000         # timed runs per latency
OPTION_NAME = r"^[a-z][a-z0-9_]{0,39}$"  # a proposer's own option (`--option NAME=VALUE`, `options = {...}`)
