#!/usr/bin/env bash
# The main job from a fresh clone: prerequisites, build, then a LoRA fine-tune of the embedded MiniLM (examples/QuickStart).
# Extra arguments go to the example (e.g. a TSV file with a header: Label<TAB>Text).
set -euo pipefail
cd "$(dirname "$0")/.."
bash eng/prereqs.sh
dotnet run -c Release --project examples/QuickStart -- "$@"
