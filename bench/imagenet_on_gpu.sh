#!/usr/bin/env bash
# The imagenet profile on a GPU machine in one go (issue 13, item 6): install the project, record the forward
# throughput of its classifier (bench/bench_pretrained.py: fp32, bf16 with channels_last), run the profile's
# chapters one after the other (device auto: cuda), time each, and pack the results with their provenance for
# the machine that builds the book (rs-repro export; bring them back there with rs-repro import).
#
# Usage: bench/imagenet_on_gpu.sh OUT_DIR [CHAPTER ...]       (default: every chapter, claims last)
# Per-chapter overrides, e.g. to fit a time budget: P_<chapter>='-p key value ...' (values without spaces), as in
#   P_fig5_attacks='-p num_images 4 -p ns [10]' bench/imagenet_on_gpu.sh /tmp/out fig5_attacks claims
# OUT_DIR receives throughput.md, wall_times.md, one log per chapter and results-imagenet.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/imagenet_on_gpu.sh OUT_DIR [CHAPTER ...]}"
shift
mkdir -p "$out"
make setup
if [ "$#" -gt 0 ]; then chapters=("$@"); else mapfile -t chapters < <(.venv/bin/rs-repro list); fi
.venv/bin/python bench/bench_pretrained.py | tee "$out/throughput.md"
printf '| chapter | wall time (s) | overrides |\n|---|---:|---|\n' > "$out/wall_times.md"
for stem in "${chapters[@]}"; do
  var="P_${stem}"
  read -r -a overrides <<< "${!var:-}"
  start=$(date +%s)
  # the chapter's units in its own process: one GPU, no Dask workers to share it
  .venv/bin/rs-repro run "$stem" --profile imagenet --no-build --workers 0 "${overrides[@]}" \
    > "$out/$stem.log" 2>&1 || { echo "chapter $stem failed: see $out/$stem.log" >&2; exit 1; }
  echo "| $stem | $(( $(date +%s) - start )) | ${!var:-} |" | tee -a "$out/wall_times.md"
done
.venv/bin/rs-repro export --profile imagenet "$out/results-imagenet.tar.gz"
