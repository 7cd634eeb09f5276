#!/usr/bin/env bash
# Copy what a sweep needs to resume (its journal and artifact store) from a work folder into
# benchmarks/in-progress/<folder name>/, with the sweep's status; see README.md here.
set -euo pipefail
src=${1:?usage: save.sh WORKDIR}
here=$(cd "$(dirname "$0")" && pwd)
dst="$here/$(basename "$src")"
mkdir -p "$dst"
cp "$src/optuna-journal.log" "$dst/optuna-journal.log.tmp" && mv "$dst/optuna-journal.log.tmp" "$dst/optuna-journal.log"
if [ -d "$src/artifacts" ]; then rm -rf "$dst/artifacts.tmp"; cp -r "$src/artifacts" "$dst/artifacts.tmp"; rm -rf "$dst/artifacts"; mv "$dst/artifacts.tmp" "$dst/artifacts"; fi
{ date -u +"saved %Y-%m-%d %H:%M UTC"; grep -h '^\[sweep\]' "$src"/../"$(basename "$src")".console.log 2>/dev/null | tail -1 || true; } > "$dst/status.txt"
echo "saved $src -> $dst"
