#!/bin/bash
# BERT lottery tickets: one line of configs_bert.txt per array task (6 lines).
#   LSF:   bsub < run_lth_bert.sh        SLURM: sbatch run_lth_bert.sh
#   local: ./run_lth_bert.sh             (every unfinished line in turn)
#BSUB -J "bert_lth[1-6]%6"
#BSUB -q gpua100
#BSUB -gpu "num=1:mode=exclusive_process"
#BSUB -n 4
#BSUB -R "span[hosts=1]"
#BSUB -R "rusage[mem=32G]"
#BSUB -W 24:00
#BSUB -wa USR1
#BSUB -wt 5
#BSUB -r
#BSUB -o outputs/bert_lth_%J_%I.out
#BSUB -e outputs/bert_lth_%J_%I.err
#SBATCH --job-name=bert_lth
#SBATCH --array=1-6
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --output=outputs/bert_lth_%A_%a.out
#SBATCH --error=outputs/bert_lth_%A_%a.err
set -euo pipefail
cd "${LS_SUBCWD:-${SLURM_SUBMIT_DIR:-$(dirname "$0")}}"
mkdir -p outputs
exec "${LTH_PYTHON:-python}" -m lth sweep configs_bert.txt --script lottery_ticket_bert.py "$@"
