#!/bin/sh
# Fine-tune DS-Net and the U-Net, the same way, on real anatomy (models.data.build) in the background.
# Resumable: run it again after an interruption and each run continues from its last.pt.
#   sh models/dsnet/train_real.sh            (after `make train-data`)
# Logs: runs/logs/train_<arch>.log (progress), models/dsnet/results/<arch>_train_real.jsonl (metrics).
set -eu
DATA=${DATA:-runs/data-real}
EPOCHS=${EPOCHS:-3}
STEPS=${STEPS:-60}
mkdir -p runs/logs
for arch in ${ARCHS:-dsnet unet}; do
  nohup nice -n 10 .venv-train/bin/python -m models.dsnet.train --arch "$arch" --data "$DATA" \
    --out "runs/train-$arch" --init-onnx "models/dsnet/$arch.onnx" --epochs "$EPOCHS" --steps "$STEPS" \
    --batch 16 --crop 128 --lesion-fraction 0.4 --hard-fraction 0.2 --max-zoom 1.2 --lr 5e-4 --cosine \
    --precise-bn 16 --val-count 100000 --threads 1 --seed 1234 --resume \
    --log "models/dsnet/results/${arch}_train_real.jsonl" >> "runs/logs/train_$arch.log" 2>&1 &
  echo $! > "runs/logs/train_$arch.pid"
done
