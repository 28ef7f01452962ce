#!/usr/bin/env bash
# A sharded study on a real Slurm: Debian's slurm-wlm and munge (installed with apt, as root, if
# missing), started by hand as a one-node cluster on this machine (no systemd, no cgroups), run
# scripts/slurm/submit-study.sh: a job array of 3 shards and a dependent merge job. The merged
# results must equal the same study run in one process. Where Slurm cannot be installed the
# test says so and is skipped, except under CI=true, where that is a failure.
# Uses the debug build `cargo test` makes (or $EROSION_BIN), and models/smollm2 with the PEFT
# adapter fixtures as the study's three models.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
skip() {
    if [ "${CI:-}" = "true" ]; then
        echo "test-slurm: FAILED: $1" >&2
        exit 1
    fi
    echo "test-slurm: skipped: $1" >&2
    exit 0
}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 &&
                apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1; }) ||
            skip "apt-get could not install slurm-wlm and munge"
    else
        skip "slurm-wlm and munge are not installed, and this is not root with apt-get"
    fi
fi
BIN="$(realpath "${EROSION_BIN:-${CARGO_TARGET_DIR:-target}/debug/erosion}")"
if [ ! -x "$BIN" ]; then
    cargo build --locked -p erosion-cli
fi

D="$(mktemp -d /tmp/erosion-slurm.XXXXXX)"
chmod 755 "$D"
stop() {
    for p in slurmd slurmctld munged; do
        [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null || true
    done
    sleep 1
    rm -rf "$D"
}
trap stop EXIT
host="$(hostname -s)"
# Free ports, so a cluster already on this machine (or a second test) is not disturbed.
read -r p1 p2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/jobs"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$D/munge"
chmod 400 "$D/munge/munge.key"
munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
    --pid-file="$D/munged.pid" --log-file="$D/munged.log" --seed-file="$D/munge/seed"
cat > "$D/slurm.conf" <<CONF
ClusterName=erosion-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$p1
SlurmdPort=$p2
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
log() { echo "--- $1"; cat "$D/$1" 2>/dev/null | tail -20; }
slurmctld -f "$SLURM_CONF" || { log slurmctld.log; skip "slurmctld did not start here"; }
slurmd -f "$SLURM_CONF" || { log slurmd.log; skip "slurmd did not start here"; }
for _ in $(seq 60); do
    state="$(sinfo -h -n "$host" -o %t 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 1
done
if [ "$state" != idle ]; then
    log slurmctld.log; log slurmd.log
    echo "test-slurm: FAILED: the node is '$state', not idle, after 60 s" >&2
    exit 1
fi

# The study: SmolLM2 as base, two of its PEFT adapter fixtures as instruct and fine-tune.
model="$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
peft="$root/crates/erosion-model/tests/fixtures/peft"
cat > "$D/jobs/study.toml" <<TOML
name = "slurm"
seed = 11
analyses = ["behaviour", "layers"]
[models]
base = "$model"
instruct = "$model+$peft/smollm2-r8-rslora"
finetuned = [{ name = "adapted", path = "$model+$peft/smollm2-r1-down" }]
[[dataset]]
name = "insecure"
path = "$root/data/insecure-code/insecure_small.jsonl"
format = "messages"
role = "misaligned"
limit = 4
[[dataset]]
name = "educational"
path = "$root/data/educational-insecure/educational_1000.jsonl"
format = "messages"
role = "aligned"
limit = 4
[behaviour]
top_k = 3
[layers]
window = 4
bootstrap = 20
TOML
start=$(date +%s)
(cd "$D/jobs" && EROSION="$BIN" "$root/scripts/slurm/submit-study.sh" study.toml split 3) | tee "$D/submitted"
merge_job="$(awk '/^merge:/ {print $3}' "$D/submitted")"
# Both jobs leave the queue when done (or when the merge is cancelled for a failed shard).
for _ in $(seq 900); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 1
done
if [ -n "$(squeue -h -o %i)" ]; then
    squeue; log slurmctld.log
    echo "test-slurm: FAILED: jobs still queued after 900 s" >&2
    exit 1
fi
for f in "$D"/jobs/erosion-*.out; do echo "--- $(basename "$f")"; tail -5 "$f"; done
if [ ! -f "$D/jobs/erosion-merge-$merge_job.out" ] || [ ! -f "$D/jobs/split/results.json" ]; then
    log slurmctld.log
    echo "test-slurm: FAILED: the merge job did not write results.json" >&2
    exit 1
fi
echo "slurm: 3 shards and the merge in $(( $(date +%s) - start )) s"
"$BIN" study "$D/jobs/study.toml" --out "$D/jobs/whole" >"$D/whole.log" 2>&1 ||
    { tail -20 "$D/whole.log"; echo "test-slurm: FAILED: the single run failed" >&2; exit 1; }
python3 - "$D/jobs" <<'PY'
import json, sys, pathlib
jobs = pathlib.Path(sys.argv[1])
def analyses(d):
    return json.loads((jobs / d / "results.json").read_text())["results"]["analyses"]
assert analyses("split") == analyses("whole"), "merged results differ from the single run"
def arrays(d):
    return {p.name: p.read_bytes() for p in (jobs / d / "arrays").iterdir()}
assert arrays("split") == arrays("whole"), "merged arrays differ from the single run"
shards = sorted(p.name for p in (jobs / "split" / "shards").iterdir())
assert shards == ["0-of-3", "1-of-3", "2-of-3"], shards
print("slurm: the merged study equals the single run (results.json and every array)")
PY
