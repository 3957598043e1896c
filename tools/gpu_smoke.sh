#!/usr/bin/env bash
# The GPU smoke test (README "Multi-GPU and GPU readiness"): the CUDA/NCCL paths no CPU test
# reaches, in under 10 minutes on one node. One PASS/FAIL/SKIP line per step; exit 1 if any failed.
#
#   bash tools/gpu_smoke.sh [WORKDIR]      (default: a fresh temporary folder; logs stay there)
#
# Steps: every task at once with AMP and TAG affinity; a resume on fewer visible GPUs; each
# balancer family; evaluate and export --check; 2-process torchrun with NCCL for the stateful
# balancers (needs 2 GPUs, else SKIP); the smoke suite through each launcher.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_smoke: no CUDA GPU visible (torch.cuda.is_available() is False): run it on a GPU host" >&2
  exit 2
fi
WORK=${1:-$(mktemp -d /tmp/gpu_smoke.XXXX)}
mkdir -p "$WORK/logs"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
FAILED=0
echo "gpu_smoke: $GPUS GPU(s), work folder $WORK"

step() {  # step NAME TIMEOUT_S COMMAND...: one line, the log's last line on failure
  local name=$1 limit=$2 start=$SECONDS runner=(timeout "$2")
  shift 2
  declare -F "$1" >/dev/null && runner=()  # a shell function here: its commands carry their own timeouts
  if "${runner[@]}" "$@" >"$WORK/logs/$name.log" 2>&1; then
    echo "PASS $name ($((SECONDS - start)) s)"
  else
    FAILED=1
    echo "FAIL $name ($((SECONDS - start)) s): $(grep -v '^\s*$' "$WORK/logs/$name.log" | tail -1) [$WORK/logs/$name.log]"
  fi
}

WORLD="$WORK/world"
TINY=(model.backbone=resnet18 model.weights=null "data.root=$WORLD" "data.size=[128,256]" data.workers=2
      train.batch_size=4 train.log_every=5 train.eval_every=1000 train.checkpoint_every=5 wandb.mode=disabled
      optim.warmup_steps=2 train.device=cuda)
ALL="tasks=[det,seg,depth,edges,normals,scene,noise]"

step world 120 "$PY" tools/make_synthetic.py --out "$WORLD" --train 16 --val 8 --test 8 --height 128 --width 256 \
  --workers 4
step all-tasks-amp-affinity 150 "$PY" tools/train.py "${TINY[@]}" "$ALL" train.steps=12 train.amp=true \
  train.affinity_every=4 "output_dir=$WORK/all"
# A run that saw every GPU resumes where only one is visible (its saved RNG state is per rank):
# it must finish, and say nothing about an inexact resume.
LAST_GPU=$((GPUS - 1))
resume_on_fewer_gpus() {
  timeout 100 "$PY" tools/train.py "${TINY[@]}" train.steps=6 "train.device=cuda:$LAST_GPU" "output_dir=$WORK/resume" &&
    CUDA_VISIBLE_DEVICES=0 timeout 100 "$PY" tools/train.py "${TINY[@]}" train.steps=12 "output_dir=$WORK/resume" --resume \
      >"$WORK/logs/resumed.log" 2>&1 &&
    ! grep -q InexactResumeWarning "$WORK/logs/resumed.log" && grep -q '"step": 12' "$WORK/resume/metrics.json"
}
step resume-on-fewer-gpus 200 resume_on_fewer_gpus
step balancer-families 240 "$PY" - "$WORK/balancers" "${TINY[@]}" <<'EOF'
import sys, tempfile
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.trainer import Trainer
out, overrides = sys.argv[1], sys.argv[2:]
families = ["equal", "uncertainty", "imtl_l", "famo", "dwa", "stch", "rlw", "gradnorm", "pcgrad",
            "pcgrad:representation", "nashmtl", "graddrop", "db_mtl", "gradvac", "cagrad"]
bad = []
for spec in families:
    name, _, space = spec.partition(":")
    extra = [f"balancer.name={name}", "train.steps=4", f"output_dir={tempfile.mkdtemp(dir=out)}"]
    extra += [f"balancer.params.space={space}"] if space else []
    try:
        Trainer(load_config(None, overrides + extra)).fit()
        print(f"  ok {spec}", flush=True)
    except Exception as err:  # every family is tried; the step fails if any did
        bad.append(f"{spec}: {type(err).__name__}: {err}".splitlines()[0])
print("failed: " + "; ".join(bad) if bad else "all balancer families stepped on the GPU")
sys.exit(1 if bad else 0)
EOF
step evaluate 120 "$PY" tools/evaluate.py --checkpoint "$WORK/all/last.pt" --limit 4
step export-check 180 "$PY" tools/export.py --checkpoint "$WORK/all/last.pt" --check 2
if [ "$GPUS" -ge 2 ]; then
  for b in uncertainty famo gradnorm gradvac nashmtl; do
    step "torchrun-nccl-$b" 150 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 tools/train.py \
      "${TINY[@]}" tasks=[det,seg,depth] balancer.name=$b train.steps=6 "output_dir=$WORK/ddp-$b"
  done
else
  echo "SKIP torchrun-nccl (2-process NCCL needs 2 GPUs; $GPUS visible)"
fi
# The smoke suite, trimmed to 2 runs, through each launcher (one results folder each).
"$PY" - "$WORK/suite.yaml" <<'EOF'
import sys, yaml
suite = yaml.safe_load(open("configs/benchmark/smoke.yaml"))
suite.update(seeds=[0], baselines=False, methods=["uncertainty", {"label": "pcgrad-rep", "name": "pcgrad",
                                                                  "params": {"space": "representation"}}])
yaml.safe_dump(suite, open(sys.argv[1], "w"))
EOF
for launcher in sequential local "submitit launcher.cluster=local"; do
  name=suite-${launcher%% *}
  # shellcheck disable=SC2086  # the launcher's words are separate overrides
  step "$name" 240 "$PY" tools/benchmark.py --suite "$WORK/suite.yaml" --out "$WORK/$name" \
    launcher.backend=$launcher
done
[ "$FAILED" = 0 ] && echo "gpu_smoke: all steps passed" || echo "gpu_smoke: some steps FAILED (logs in $WORK/logs)"
exit "$FAILED"
