#!/usr/bin/env bash
# Train any config on the processes of one node (one per GPU) with torchrun and Lightning DDP.
#   configs/launch/torchrun.sh NPROC CONFIG.yaml [fj fit options ...]
# e.g. configs/launch/torchrun.sh 4 configs/part_jetclass.yaml --data.train_files '[JetClass/train/*.root]'
# Several nodes: run it on every node with NNODES, NODE_RANK and MASTER_ADDR set (MASTER_PORT optional).
set -euo pipefail
nproc=$1
config=$2
shift 2
nnodes=${NNODES:-1}
if [ "$nnodes" = 1 ]; then
    rdzv=(--standalone)
else
    rdzv=(--nnodes "$nnodes" --node_rank "$NODE_RANK" --rdzv_backend c10d
          --rdzv_endpoint "$MASTER_ADDR:${MASTER_PORT:-29500}")
fi
exec torchrun "${rdzv[@]}" --nproc_per_node "$nproc" "$(command -v fj)" fit --config "$config" \
    --trainer.devices "$nproc" --trainer.num_nodes "$nnodes" --trainer.strategy ddp "$@"
