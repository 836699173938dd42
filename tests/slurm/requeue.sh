#!/usr/bin/env bash
# Requeue a training job mid-run, for tests/test_slurm.py (run inside `cluster.sh run DIR`):
#
#   tests/slurm/requeue.sh CHECKPOINT LOG SNAKEMAKE...
#
# Starts SNAKEMAKE in the background; once the file CHECKPOINT exists (the training job saved a
# checkpoint), requeues the running SLURM job with `scontrol requeue`, keeps the rule's LOG of that
# first attempt as LOG.attempt1, lets the job start again at once (SLURM holds a requeued job
# for 120 s: BeginTime), waits for SNAKEMAKE and prints what SLURM recorded, then `squeue`.
set -uo pipefail
checkpoint=$1 log=$2
shift 2
"$@" &
snakemake=$!
trap 'kill -TERM $snakemake 2>/dev/null; wait $snakemake; exit 143' TERM INT

say() { echo "requeue.sh: $*"; }
field() { scontrol show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

until [[ -s $checkpoint ]]; do
  kill -0 "$snakemake" 2>/dev/null || { say "snakemake ended before a checkpoint appeared"; wait "$snakemake"; exit $?; }
  sleep 0.2
done
job=$(squeue -h -t running -o %i | head -n1)
[[ -n $job ]] || { say "checkpoint seen but no running SLURM job"; kill -TERM "$snakemake"; wait "$snakemake"; exit 1; }
say "checkpoint $checkpoint seen while SLURM job $job runs: NumTasks=$(field "$job" NumTasks) step tasks=$(scontrol show step "$job.0" 2>/dev/null | tr ' ' '\n' | sed -n 's/^Tasks=//p')"
scontrol requeue "$job" || { say "scontrol requeue $job failed"; kill -TERM "$snakemake"; wait "$snakemake"; exit 1; }
say "requeued SLURM job $job"
for ((i = 0; i < 600; i++)); do
  [[ $(squeue -h -j "$job" -o %T) == PENDING ]] && break
  sleep 0.2
done
cp "$log" "$log.attempt1" 2>/dev/null || say "no rule log $log after the first attempt"
say "job $job is $(squeue -h -j "$job" -o '%T (%r)') after the requeue; releasing it now"
scontrol update jobid="$job" StartTime=now
wait "$snakemake"
rc=$?
say "SLURM job $job: JobState=$(field "$job" JobState) Restarts=$(field "$job" Restarts) NumTasks=$(field "$job" NumTasks)"
echo "== squeue =="
squeue --states=all -h -o "%i|%T"
exit $rc
