#!/usr/bin/env bash
# One prepared command for a GPU machine: the bench scripts on CUDA in their --quick mode, each
# under `timeout` and all within a time budget (default 285 s), then a compact summary.
#
#   bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--budget SECONDS] [--install] [--wheels DIR]
#                             [--device cuda|cpu] [--only NAME,NAME...]
# (--device cpu: the same plan without a GPU, to test the check; --only: these runs of the plan)
#
# Runs, in this order so that the budget cuts the least important first: bench_train and
# bench_infer (plain), bench_train with --cuda-graphs, --tf32 and --dtype bfloat16,
# bench_solvers, bench_simulator (float32), bench_infer with the same three flags,
# bench_epoch, bench_data.
# Each writes --json <results>/<name>.json and appends its output to <results>/gpu_check.log.
# A run whose script lacks one of its flags is reported as skipped, one that fails or times
# out as failed; the check goes on either way. Exit status: 0 all ran, 1 some failed,
# 2 no usable GPU or Python.
#
# Results go to --out DIR, else $OUT_DIR, else $OUT (when set), else ./gpu_results. Under $OUT
# (a machine that returns only a few files) the per-run JSONs are bundled: $OUT holds
# summary.md, all.json ({run: report}) and gpu_check.log.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (with src/ on PYTHONPATH, so a machine
# with torch but no install of this package works); --install runs `make install-dev` first
# when .venv is missing. --wheels DIR installs the wheels in DIR (no network, no deps) into a
# scratch site-packages for packages that machine lacks (an H200 image lacked polars, pydantic,
# hydra-core, omegaconf, antlr4-python3-runtime and torchode; docs/benchmarks.md "On a GPU").

set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

DRY_RUN=0
DEVICE=cuda
ONLY=""
INSTALL=0
WHEELS=""
BUDGET_S="${BUDGET_S:-285}"
OUT_GIVEN="${OUT_DIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --install) INSTALL=1 ;;
    --out) OUT_GIVEN="$2"; shift ;;
    --budget) BUDGET_S="$2"; shift ;;
    --device) DEVICE="$2"; shift ;;
    --only) ONLY=",$2," ; shift ;;
    --wheels) WHEELS="$2"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$BUDGET_S" in ''|*[!0-9]*) echo "error: --budget takes whole seconds, got '$BUDGET_S'" >&2; exit 2 ;; esac

# Where the results go; bundled when the machine returns only a few files from $OUT.
BUNDLE=0
if [ -n "$OUT_GIVEN" ]; then
  RESULTS="$OUT_GIVEN"
elif [ -n "${OUT:-}" ]; then
  RESULTS="$OUT"; BUNDLE=1
else
  RESULTS="./gpu_results"
fi
if [ "$BUNDLE" = 1 ] && [ "$DRY_RUN" = 0 ]; then RUNS="$(mktemp -d)"; else RUNS="$RESULTS"; fi
LOG="$RESULTS/gpu_check.log"
START=$SECONDS

say() { echo "[gpu_check $((SECONDS - START))s] $*"; }

# --- the card ---------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
  say "dry run: would check nvidia-smi and print the card"
elif [ "$DEVICE" = cpu ]; then
  say "device cpu: no GPU checked"
elif ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "error: nvidia-smi is missing or finds no GPU; this check needs a CUDA machine" >&2
  exit 2
else
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader \
    | sed 's/^/card: /'
fi

# --- Python -----------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
  if [ ! -x .venv/bin/python ] && [ "$INSTALL" = 1 ]; then
    if [ "$DRY_RUN" = 1 ]; then say "dry run: would run make install-dev"; else make install-dev || exit 2; fi
  fi
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -n "$WHEELS" ]; then
  SITE="$(mktemp -d)"
  if [ "$DRY_RUN" = 1 ]; then
    say "dry run: would install $WHEELS/*.whl into a scratch site-packages"
  else
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="$SITE:$PYTHONPATH"
  fi
fi
if [ "$DRY_RUN" = 0 ]; then
  if ! "$PYTHON" -c "import sys, torch, twinode
gpu = sys.argv[1] != 'cpu'
assert torch.cuda.is_available() or not gpu, 'torch sees no CUDA device'
print('python:', sys.executable, 'torch', torch.__version__, 'cuda', torch.version.cuda, '-', torch.cuda.get_device_name() if gpu else 'cpu')" "$DEVICE"; then
    echo "error: $PYTHON cannot import torch and twinode with CUDA (try --install, or PYTHON=...)" >&2
    exit 2
  fi
  mkdir -p "$RESULTS" "$RUNS"
  : >"$LOG"
fi

# --- the plan: name | per-run timeout (s) | script | extra flags ---------------------------
PLAN=(
  "train|90|bench_train.py|"
  "infer|90|bench_infer.py|"
  "train_cuda_graphs|75|bench_train.py|--cuda-graphs"
  "train_tf32|75|bench_train.py|--tf32"
  "train_bf16|75|bench_train.py|--dtype bfloat16"
  "solvers|75|bench_solvers.py|"
  "simulator|60|bench_simulator.py|--dtype float32"
  "infer_tf32|75|bench_infer.py|--tf32"
  "infer_bf16|75|bench_infer.py|--dtype bfloat16"
  "infer_cuda_graphs|75|bench_infer.py|--cuda-graphs"
  "epoch|90|bench_epoch.py|"
  "data|60|bench_data.py|"
)

# A flag is supported when the script names it, or takes it from benchlib.common_args /
# benchlib.precision_args.
supports() {
  local script="$1" flag="$2"
  grep -q -- "\"$flag\"" "scripts/$script" && return 0
  case "$flag" in --device|--quick|--json|--threads) grep -q "common_args" "scripts/$script" && return 0 ;; esac
  case "$flag" in --tf32|--dtype) grep -q "precision_args" "scripts/$script" && return 0 ;; esac
  return 1
}

declare -a NAMES STATUS SECS JSONS
FAILED=0
for entry in "${PLAN[@]}"; do
  IFS='|' read -r name limit script extra <<<"$entry"
  if [ -n "$ONLY" ] && [ "${ONLY#*,"$name",}" = "$ONLY" ]; then continue; fi
  json="$RUNS/$name.json"
  NAMES+=("$name"); JSONS+=("")
  if [ ! -f "scripts/$script" ]; then
    STATUS+=("skipped: no scripts/$script"); SECS+=("-"); say "$name: skipped (no scripts/$script)"; continue
  fi
  missing=""
  for flag in --device --quick --json $extra; do
    case "$flag" in --*) supports "$script" "$flag" || missing="$missing $flag" ;; esac
  done
  if [ -n "$missing" ]; then
    [ "$DRY_RUN" = 1 ] && echo "# skipped, $script lacks$missing: $PYTHON scripts/$script --device $DEVICE --quick --json $json $extra"
    STATUS+=("skipped: $script lacks$missing"); SECS+=("-"); say "$name: skipped ($script lacks$missing)"; continue
  fi
  left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt 20 ]; then
    STATUS+=("skipped: out of the ${BUDGET_S} s budget"); SECS+=("-"); say "$name: skipped (budget spent)"; continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  # shellcheck disable=SC2086  # $extra holds separate flags
  cmd=(timeout -k 5 "$limit" "$PYTHON" "scripts/$script" --device "$DEVICE" --quick --json "$json" $extra)
  if [ "$DRY_RUN" = 1 ]; then
    echo "${cmd[*]}"; STATUS+=("dry run"); SECS+=("-"); continue
  fi
  say "$name: ${cmd[*]}"
  echo "===== $name: ${cmd[*]}" >>"$LOG"
  t0=$SECONDS
  "${cmd[@]}" >>"$LOG" 2>&1
  rc=$?
  SECS+=("$((SECONDS - t0))")
  if [ "$rc" = 0 ] && [ -s "$json" ]; then
    STATUS+=("ok"); JSONS[${#JSONS[@]}-1]="$json"
  else
    FAILED=1
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then STATUS+=("failed: timed out after ${limit} s")
    elif [ "$rc" = 0 ]; then STATUS+=("failed: wrote no $json")
    else STATUS+=("failed: exit $rc"); fi
    say "$name: ${STATUS[${#STATUS[@]}-1]}; last lines:"
    tail -n 8 "$LOG" | sed 's/^/    /'
  fi
done

# --- summary -----------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
  say "dry run: results would go to $RESULTS$([ "$BUNDLE" = 1 ] && echo ' (bundled: summary.md, all.json, gpu_check.log)')"
  for i in "${!NAMES[@]}"; do printf '  %-18s %s\n' "${NAMES[$i]}" "${STATUS[$i]}"; done
  exit 0
fi
{
  echo "# gpu_check ($(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - START)) s)"
  echo
  if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sed 's/^/card: /'; echo; fi
  echo "| run | status | wall s |"
  echo "|---|---|---:|"
  for i in "${!NAMES[@]}"; do echo "| ${NAMES[$i]} | ${STATUS[$i]} | ${SECS[$i]} |"; done
  echo
  ok=()
  for j in "${JSONS[@]}"; do [ -n "$j" ] && ok+=("$j"); done
  [ ${#ok[@]} -gt 0 ] && "$PYTHON" scripts/benchlib.py summary "${ok[@]}"
} >"$RESULTS/summary.md"
if [ "$BUNDLE" = 1 ]; then
  "$PYTHON" - "$RESULTS/all.json" "$RUNS"/*.json <<'EOF'
import json, pathlib, sys
out, paths = sys.argv[1], [p for p in sys.argv[2:] if pathlib.Path(p).is_file()]
reports = {}
for p in paths:
    try:
        reports[pathlib.Path(p).stem] = json.loads(pathlib.Path(p).read_text())
    except ValueError as exc:
        reports[pathlib.Path(p).stem] = {"unreadable": str(exc)}
pathlib.Path(out).write_text(json.dumps(reports, indent=1))
EOF
fi
cat "$RESULTS/summary.md"
failed=()
for i in "${!NAMES[@]}"; do case "${STATUS[$i]}" in failed*) failed+=("${NAMES[$i]}") ;; esac; done
if [ "$FAILED" = 1 ]; then
  say "failed: ${failed[*]} (see $LOG)"
  exit 1
fi
say "all runs ok or skipped; results in $RESULTS"
