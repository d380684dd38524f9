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
# sbatch also reads #BSUB (and #PBS) lines unless told not to; LSF reads #SBATCH lines as comments.
#SBATCH --ignore-pbs
#SBATCH --job-name=bert_lth
#SBATCH --array=1-6
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=outputs/bert_lth_%A_%a.out
#SBATCH --error=outputs/bert_lth_%A_%a.err
set -euo pipefail
# The folder it was submitted from (a SLURM job runs a copy of this script; LSF passes only the folder).
here="$("${LTH_PYTHON:-python}" -m lth job_folder "$0" lottery_ticket_bert.py)"
cd "$here"
CONFIG="${LTH_CONFIG:-configs_bert.txt}"  # another config file of this folder's runs: LTH_CONFIG (size the array to it)
exec "${LTH_PYTHON:-python}" -m lth sweep "$CONFIG" --script lottery_ticket_bert.py "$@"
