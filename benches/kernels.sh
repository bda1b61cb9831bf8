#!/bin/bash
# pp512 / tg64 of each of our kernels beside llama.cpp on the same GGUF, same
# thread count, alternating, in one run (issue 16). Prints markdown rows.
#
#   benches/kernels.sh LLAMA_BIN_DIR [ROUNDS] [MODEL]
#
# LLAMA_BIN_DIR holds llama-bench (../shared/tools/build-llama.sh prints it;
# LLAMA_CMAKE="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF" builds the
# AVX2-only reference). DEPTH=2000 also times decoding after 2000 tokens.
set -eu
llama=${1:?llama.cpp bin directory}
rounds=${2:-2}
model=${3:-$HOME/.local/share/pie-edit/models/SmolLM2-135M-Instruct.Q4_1.gguf}
depth=${DEPTH:-}
cd "$(dirname "$0")/.."
cargo build --release --bin pie-bench >/dev/null 2>&1
ours=target/release/pie-bench
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | threads | engine | pp512 tok/s | tg64 tok/s |${depth:+ tg64 after $depth tok/s |}"
echo "|---|---|---|---|---|${depth:+---|}"
for r in $(seq "$rounds"); do
  for t in 1 2; do
    row=$("$llama/llama-bench" -m "$model" -p 512 -n 64 -r 3 -t "$t" -o csv 2>/dev/null |
      awk -F, 'NR>1 {gsub(/"/,""); printf "%.0f ± %.0f | ", $(NF-1), $NF}')
    deep=""
    if [ -n "$depth" ]; then
      deep=$("$llama/llama-bench" -m "$model" -p 0 -n 64 -d "$depth" -r 3 -t "$t" -o csv 2>/dev/null |
        awk -F, 'NR>1 {gsub(/"/,""); printf "%.0f ± %.0f | ", $(NF-1), $NF}')
    fi
    echo "| $r | $t | llama.cpp | ${row}${deep}"
    for k in avx512vnni avx2 generic; do
      weights=native
      [ "$k" = generic ] && weights=q8
      line=$($ours --speed-only --weights $weights --kernel $k --threads "$t" 2>/dev/null | grep '^| ' | tail -1) || continue
      [ -z "$line" ] && continue
      pp=$(echo "$line" | awk -F'|' '{print $5}' | xargs)
      tg=$(echo "$line" | awk -F'|' '{print $6}' | xargs)
      deep=""
      if [ -n "$depth" ]; then
        deep=$($ours --speed-only --weights $weights --kernel $k --threads "$t" --decode-context "$depth" 2>/dev/null |
          grep '^| ' | tail -1 | awk -F'|' '{print $6}' | xargs)
        deep="$deep |"
      fi
      echo "| $r | $t | pie-edit $k | $pp | $tg |${deep:+ $deep}"
    done
  done
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
