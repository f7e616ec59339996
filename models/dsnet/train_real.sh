#!/bin/sh
# Fine-tune DS-Net and the U-Net, the same way, on real anatomy (models.data.build) in the background.
# Resumable: run it again after an interruption and each run continues from its last.pt.
#   sh models/dsnet/train_real.sh            (after `make train-data`; ARCHS=dsnet for one network)
# Logs: runs/logs/train_<arch>.log (progress), models/dsnet/results/<arch>_train_real_<TAG>.jsonl (metrics).
# 192x192 crops of the 256x256 body-fitted canvases (most of the body: heart and mediastinum are seen with
# their context), 45 % centred on a hard-negative organ whose cross-entropy counts 4x, 25 % near a lesion;
# the kept checkpoint has the best mean of validation Dice and clean tumour-free validation slices.
# The defaults are the committed weights' recipe (session 11, model card: 5 mm slabs in the data and the chest
# patient's great vessels as hard negatives, scanner texture on the crops); session 10's run was TAG=slabtex on
# data without those labels, session 9's TEXTURE=0 TAG=pm on data without slabs, session 5's
# DATA=runs/data-border TAG=border NICE=19 ARCHS=dsnet TEXTURE=0.
set -eu
DATA=${DATA:-runs/data-real}
EPOCHS=${EPOCHS:-10}
STEPS=${STEPS:-100}
LR=${LR:-1e-4}
TEXTURE=${TEXTURE:-0.5}
TAG=${TAG:-labels}
NICE=${NICE:-10}
mkdir -p runs/logs
for arch in ${ARCHS:-dsnet unet}; do
  OMP_NUM_THREADS=1 nohup nice -n "$NICE" .venv-train/bin/python -m models.dsnet.train --arch "$arch" --data "$DATA" \
    --out "runs/train-$arch-$TAG" --init-onnx "models/dsnet/$arch.onnx" --epochs "$EPOCHS" --steps "$STEPS" \
    --batch 8 --crop 192 --lesion-fraction 0.25 --hard-fraction 0.45 --hard-weight 4 --max-zoom 1.25 \
    --lr "$LR" --cosine --precise-bn 16 --val-count 100000 --select dice+clean --keep-epochs --threads 1 --seed 1234 --texture "$TEXTURE" --resume \
    --log "models/dsnet/results/${arch}_train_real_$TAG.jsonl" >> "runs/logs/train_$arch.log" 2>&1 &
  echo $! > "runs/logs/train_$arch.pid"
done
