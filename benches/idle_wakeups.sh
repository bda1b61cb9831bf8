#!/usr/bin/env bash
# Idle wakeups of a running pie-edit: context switches of all its threads
# over a quiet window, read from /proc/PID/task/*/status, once the model is
# ready. Usage: benches/idle_wakeups.sh [BINARY] [SECONDS]
set -euo pipefail
bin=${1:-target/release/pie-edit}
secs=${2:-10}
work=$(mktemp -d)
trap 'tmux kill-session -t pie-idle 2>/dev/null || true; rm -rf "$work"' EXIT
cp assets/demo.py "$work/"
tmux new-session -d -s pie-idle -x 100 -y 30 \
    "env XDG_DATA_HOME=$work/data $(realpath "$bin") $work/demo.py"
for _ in $(seq 1 120); do
    sleep 1
    tmux capture-pane -p -t pie-idle | grep -q ' ready' && break
done
sleep 3
# The tmux server carries the same command line; the editor is the newest
# process whose first argument is the binary.
pid=$(for p in $(pgrep -f "$work/demo.py"); do
    [[ "$(tr '\0' ' ' </proc/$p/cmdline)" == "$(realpath "$bin") "* ]] && echo "$p"
done | tail -1)
count() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t"/comm)" \
            "$(awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' "$t"/status)"
    done | sort
}
before=$(count)
sleep "$secs"
after=$(count)
join <(echo "$before") <(echo "$after") | awk -v s="$secs" \
    '{d = $5 - $3; t += d; if (d > 0) printf "  thread %s (%s): %d\n", $1, $2, d} END {printf "%d wakeups in %d s (%.1f/s)\n", t, s, t / s}'
