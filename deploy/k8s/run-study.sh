#!/usr/bin/env bash
# A study as Kubernetes Jobs, in the order Kubernetes itself cannot express: the config as a
# ConfigMap, the teacher stage, the workers (or shards), then the merge, each waited for.
#   deploy/k8s/run-study.sh                       # studies/synthetic.json, 4 workers
#   CONFIG=my-study.json STUDY=my-study WORKERS=16 IMAGE=registry.example.com/icl-distill:0.1.0 deploy/k8s/run-study.sh
# Environment: CONFIG (study JSON on this machine), STUDY (output /data/runs/$STUDY on the PVC),
# WORKERS (pods, default 4), MODE (worker: leases, the default; shard: --shard i/N), IMAGE,
# CPUS (per pod; default the config's "threads", else 1), MEMORY (per pod, default 2Gi),
# NAMESPACE (default: kubectl's current one). The PVC (pvc.yaml) must exist.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CONFIG=${CONFIG:-$repo/studies/synthetic.json}
STUDY=${STUDY:-synthetic}
WORKERS=${WORKERS:-4}
MODE=${MODE:-worker}
IMAGE=${IMAGE:-icl-distill:0.1.0}
MEMORY=${MEMORY:-2Gi}
kc=(kubectl ${NAMESPACE:+--namespace "$NAMESPACE"})

die() { echo "run-study: $*" >&2; exit 1; }
[ -f "$CONFIG" ] || die "CONFIG $CONFIG: no such file"
[[ "$STUDY" =~ ^[A-Za-z0-9._-]+$ ]] || die "STUDY '$STUDY' must be a plain directory name"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS '$WORKERS' must be a positive integer"
case "$MODE" in worker) step2=study-workers.yaml; job2=icld-study-workers ;; shard) step2=study-shards.yaml; job2=icld-study-shards ;; *) die "MODE '$MODE' must be worker or shard" ;; esac
# The pods' CPUs must be the threads the study runs with (a cell records its thread count).
threads=$(grep -o '"threads"[[:space:]]*:[[:space:]]*[0-9]*' "$CONFIG" | head -n 1 | grep -o '[0-9]*$' || true)
CPUS=${CPUS:-${threads:-1}}
[ -z "$threads" ] || [ "$threads" = "$CPUS" ] || die "CPUS=$CPUS differs from the config's \"threads\": $threads (a worker would use $threads of its $CPUS CPUs)"

# The manifests with this run's values; every replaced text must be there (a renamed field fails here).
render() {
  local f=$here/$1 s
  for s in 'image: icl-distill:0.1.0' '/data/runs/synthetic' 'cpu: "1"' 'memory: 2Gi'; do
    grep -qF -- "$s" "$f" || die "$1: expected to contain '$s'"
  done
  sed -e "s|image: icl-distill:0.1.0|image: $IMAGE|" -e "s|/data/runs/synthetic|/data/runs/$STUDY|" \
      -e "s|cpu: \"1\"|cpu: \"$CPUS\"|" -e "s|memory: 2Gi|memory: $MEMORY|" \
      -e "s|completions: 4|completions: $WORKERS|" -e "s|parallelism: 4|parallelism: $WORKERS|" \
      -e "s|\$(SHARD)/4|\$(SHARD)/$WORKERS|" "$f"
}

# Waits until the Job is Complete (0) or Failed (1).
wait_job() {
  local c
  while :; do
    c=$("${kc[@]}" get job "$1" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}')
    case " $c " in *" Complete "*) echo "run-study: job/$1 complete"; return 0 ;; *" Failed "*) echo "run-study: job/$1 failed" >&2; return 1 ;; esac
    sleep 10
  done
}

"${kc[@]}" get pvc icld-data >/dev/null || die "the PVC icld-data does not exist (kubectl apply -f $here/pvc.yaml)"
"${kc[@]}" create configmap icld-study-config --from-file=study.json="$CONFIG" --dry-run=client -o yaml | "${kc[@]}" apply -f -
# Jobs are immutable: the previous run's go first (the study directory stays; a rerun resumes it).
"${kc[@]}" delete job icld-study-stage icld-study-workers icld-study-shards icld-study-merge --ignore-not-found --wait=true

render study-stage.yaml | "${kc[@]}" apply -f -
wait_job icld-study-stage || die "the teacher stage failed: kubectl logs job/icld-study-stage"
render "$step2" | "${kc[@]}" apply -f -
failed=0; wait_job "$job2" || failed=1 # merge anyway: it lists the cells that are missing
render study-merge.yaml | "${kc[@]}" apply -f -
wait_job icld-study-merge || die "the merge failed: kubectl logs job/icld-study-merge"
"${kc[@]}" logs job/icld-study-merge
echo "run-study: results in /data/runs/$STUDY/results.json and report.html on the PVC icld-data (README: kubectl cp)"
[ "$failed" = 0 ] || die "job/$job2 failed; the merge lists the missing cells; rerun to finish them"
