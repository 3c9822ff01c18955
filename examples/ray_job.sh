#!/usr/bin/env bash
# The whole pipeline as one Ray cluster job: a Stage I sweep on Ray Tune (data-parallel trials),
# then the hardware-aware search with parallel trials on the best supernet, then the export.
#
# Prerequisites (see docs/howto/cluster.md and docs/howto/ray.md):
#   * a Ray cluster whose nodes all have this package installed in the same environment
#     (pip install -e ".[dev,nni]"), started with `ray start --head` / `ray start --address=...`;
#   * SHARED: a directory mounted at the same path on every node (NFS, EFS, Lustre, ...):
#     Tune checkpoints, the best supernet and the study's run dir (trial bundles) live there.
#     The Optuna study DB stays a SQLite file on the head node (only the driver writes it);
#     set STORAGE=postgresql+psycopg://user:password@host:5432/db to keep the study, latency
#     and accuracy tables in one PostgreSQL database shared with other drivers (--storage).
#
# Usage: RAY_ADDRESS=http://HEAD:8265 SHARED=/mnt/shared/dsnet examples/ray_job.sh
# Ray 2.60 clusters use token authentication: the submitting shell needs RAY_AUTH_MODE=token
# and the cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN).
# Local try-out (needs the [cluster] extra for the Ray dashboard's job server; ~3 min on 2 CPUs,
# re-submitting it resumes both stages in seconds):
#   ray start --head --num-cpus 2
#   RAY_AUTH_MODE=token RAY_ADDRESS=http://127.0.0.1:8265 SHARED=/tmp/dsnet_shared SAMPLES=2 \
#       EPOCHS=1 TRIALS=2 DP_WORKERS=1 GPUS=0 WORKERS=2 examples/ray_job.sh
#   ray stop
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
SHARED=${SHARED:?set SHARED to a directory mounted on every node}
SAMPLES=${SAMPLES:-8}        # Stage I trials
DP_WORKERS=${DP_WORKERS:-2}  # data-parallel workers per Stage I trial
GPUS=${GPUS:-1}              # GPUs per Stage I worker (0 on CPU clusters)
WORKERS=${WORKERS:-4}        # search trials in parallel
HW=${HW:-jetson}
EPOCHS=${EPOCHS:+--epochs $EPOCHS}  # Stage I epochs per trial (default: the trainer's)
TRIALS=${TRIALS:+--trials $TRIALS}  # search trials (default: the study's)
STORAGE=${STORAGE:+--storage $STORAGE}  # one PostgreSQL database for the search (default: SQLite)

ray job submit --address "$RAY_ADDRESS" --working-dir . -- bash -c "
  set -e
  # a re-submitted job continues the interrupted sweep instead of starting over
  resume=''; [ -d $SHARED/ray/stage1_tune ] && resume=--resume
  dsnet-automl train-supernet --out $SHARED/stage1 --tune \$resume --samples $SAMPLES $EPOCHS \
      --dp-workers $DP_WORKERS --gpus-per-worker $GPUS --batch-size 64 \
      --ray-address auto --storage-path $SHARED/ray --no-progress
  dsnet-automl search studies/demo.yaml --hw $HW --workers $WORKERS $TRIALS --ray-address auto \
      --checkpoint $SHARED/stage1/best/checkpoint.pt --runs-dir $SHARED/studies \
      --storage-path $SHARED/ray $STORAGE --no-progress
"
