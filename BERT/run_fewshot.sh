#!/bin/bash
# Few-shot transfer: one line of few_shot_configs.txt per array task (36 lines). The source tickets
# come from run_lth_bert.sh (submit this one after it, e.g. bsub -w "done(bert_lth)" < run_fewshot.sh,
# or sbatch --dependency=afterok:<job id> run_fewshot.sh); a missing source ticket fails its line
# with one message naming the file. The union ensembles of each seed's SST-2 and QQP tickets are
# made here first when both exist (idempotent; files are written atomically).
#   LSF:   bsub < run_fewshot.sh         SLURM: sbatch run_fewshot.sh
#   local: ./run_fewshot.sh              (every unfinished line in turn)
#BSUB -J "fewshot_transfer[1-36]%6"
#BSUB -q gpua100
#BSUB -gpu "num=1:mode=exclusive_process"
#BSUB -n 4
#BSUB -R "span[hosts=1]"
#BSUB -R "rusage[mem=32G]"
#BSUB -W 12:00
#BSUB -wa USR1
#BSUB -wt 5
#BSUB -r
#BSUB -o outputs/fewshot_%J_%I.out
#BSUB -e outputs/fewshot_%J_%I.err
# sbatch also reads #BSUB (and #PBS) lines unless told not to; LSF reads #SBATCH lines as comments.
#SBATCH --ignore-pbs
#SBATCH --job-name=fewshot_transfer
#SBATCH --array=1-36
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=outputs/fewshot_%A_%a.out
#SBATCH --error=outputs/fewshot_%A_%a.err
set -euo pipefail
# The folder it was submitted from (a SLURM job runs a copy of this script; LSF passes only the folder).
here="$("${LTH_PYTHON:-python}" -m lth job_folder "$0" few_shot_training.py)"
cd "$here"
CONFIG="${LTH_CONFIG:-few_shot_configs.txt}"  # another config file of this folder's runs: LTH_CONFIG (size the array to it)
PYTHON="${LTH_PYTHON:-python}"
for seed in 42 123 999; do
    a="models/lottery_ticket_sst2_sparsity60_seed${seed}.safetensors"
    b="models/lottery_ticket_qqp_sparsity70_subset67360_seed${seed}.safetensors"
    if [ -f "$a" ] && [ -f "$b" ] && [ ! -f "models/ensemble_ticket_sst2_qqp_union_seed${seed}.safetensors" ]; then
        "$PYTHON" create_ensemble_tickets.py --ticket_a "$a" --ticket_b "$b" --combine union --save_dir models
    fi
done
exec "$PYTHON" -m lth sweep "$CONFIG" --script few_shot_training.py "$@"
