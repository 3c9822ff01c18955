#!/usr/bin/env bash
# Run on the head node of deploy/ray/cluster.yaml (ray submit / ray attach). DSNET_STORAGE names the
# PostgreSQL database (postgresql+psycopg://USER:PASSWORD@HOST:5432/DB) holding the study, the latency
# tables and the accuracy table; every machine writes there.
set -euo pipefail
: "${DSNET_STORAGE:?set DSNET_STORAGE=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB}"
cd ~/dsnet_automl
~/dsnet/bin/dsnet-automl search studies/demo.yaml --hw jetson --ray-address auto --workers 4 \
    --storage "$DSNET_STORAGE" --storage-path /mnt/shared/ray --runs-dir /mnt/shared/runs
