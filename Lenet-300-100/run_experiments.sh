#!/bin/bash
# LeNet-300-100 sweep over configs.txt (20 runs).
#   workstation:  ./run_experiments.sh            (every unfinished line in turn; add --dry-run to list them)
#   LSF:          bsub < run_experiments.sh       (array job, line $LSB_JOBINDEX)
#   SLURM:        sbatch run_experiments.sh       (array job, line $SLURM_ARRAY_TASK_ID)
# Finished runs are skipped and interrupted ones resume, so resubmitting the whole array is safe. Five minutes
# before the time limit the job gets SIGUSR1: the run saves its progress and the task requeues itself.
#BSUB -J "lenet_lth[1-20]%5"
#BSUB -q gpua100
#BSUB -gpu "num=1:mode=exclusive_process"
#BSUB -n 4
#BSUB -W 12:00
#BSUB -R "rusage[mem=16G]"
#BSUB -R "span[hosts=1]"
#BSUB -wa USR1
#BSUB -wt 5
#BSUB -r
#BSUB -o outputs/lenet_lth_%J_%I.out
#BSUB -e outputs/lenet_lth_%J_%I.err
# sbatch also reads #BSUB (and #PBS) lines unless told not to; LSF reads #SBATCH lines as comments.
#SBATCH --ignore-pbs
#SBATCH --job-name=lenet_lth
#SBATCH --array=1-20%5
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=outputs/lenet_lth_%A_%a.out
#SBATCH --error=outputs/lenet_lth_%A_%a.err
set -euo pipefail
# The folder it was submitted from (a SLURM job runs a copy of this script; LSF passes only the folder).
here="$("${LTH_PYTHON:-python}" -m lth job_folder "$0" main.py)"
cd "$here"
CONFIG="${LTH_CONFIG:-configs.txt}"  # another config file of this folder's runs: LTH_CONFIG (size the array to it)
exec "${LTH_PYTHON:-python}" -m lth sweep "$CONFIG" --script main.py "$@"
