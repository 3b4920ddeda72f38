#!/usr/bin/env bash
# The self-contained lab: three local containers (frontal, encoding, lrs) that boot systemd, on a
# private podman network; a real Ralph LRS and the Pod fixture served over git; then
# playbooks/site.yml deploys the real pipeline over SSH as a sudo user, and one statement goes from
# Pod's task on the frontal, through Redis and the encoding host's Celery worker, into the LRS. It
# prints one line per step with its time, and that statement's id; the whole output of every step
# goes to a log file whose path it prints.
#   scripts/lab.sh          (re)create the lab and deploy: LAB_NAME (default xapi-lab), LAB_RELEASE
#                           (bookworm or trixie), LAB_ENCODING_HOSTS (1, or 2: a second encoding
#                           host, encoding2, with the worker's defaults; tests/lab/encoding2.yml)
#   scripts/lab.sh down     remove it
set -euo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$project"
export LAB_NAME=${LAB_NAME:-xapi-lab}
release=${LAB_RELEASE:-bookworm}
inventory=(-i inventory/lab)
case "${LAB_ENCODING_HOSTS:-1}" in
  1) ;;
  2) export LAB_HOSTS="frontal encoding encoding2 lrs"; inventory+=(-i tests/lab/encoding2.yml) ;;
  *) echo "lab: LAB_ENCODING_HOSTS must be 1 or 2, not '$LAB_ENCODING_HOSTS'" >&2; exit 2 ;;
esac

bash scripts/setup.sh
export PATH="$project/.venv/bin:$PATH"
export CONTAINERS_CONF="$project/tests/lab/containers.conf"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1

if [ "${1:-}" = down ]; then
  exec tests/lab/labctl down "$LAB_NAME"
fi

log="$project/.lab/logs/$LAB_NAME.log"
mkdir -p "$(dirname "$log")"
: >"$log"
echo "lab: the whole output of every step goes to $log"

# Where a step failed: the last task Ansible started before its first failure, and that failure.
explain_failure() {
  local from=$1
  tail -n "+$from" "$log" | awk '
    /^TASK \[/ { task = $0 }
    /^(fatal|failed): \[/ && !shown { print "lab:   " task; shown = 1; n = 0 }
    shown && n < 12 { print "lab:   " $0; n++ }
    END { exit !shown }' ||
    tail -n 8 "$log" | sed 's/^/lab:   /'
}

start=$(date +%s)
nsteps=4 i=0
step() {  # step WHAT COMMAND...: run a step, its output into the log; one line with its time
  local what=$1 t0 from
  shift
  i=$((i + 1))
  t0=$(date +%s)
  from=$(($(wc -l <"$log") + 1))
  printf '=== step %d/%d: %s\n' "$i" "$nsteps" "$what" >>"$log"
  if "$@" >>"$log" 2>&1; then
    printf 'lab: [%d/%d] %s: done in %d s\n' "$i" "$nsteps" "$what" "$(($(date +%s) - t0))"
  else
    printf 'lab: [%d/%d] %s: FAILED after %d s\n' "$i" "$nsteps" "$what" "$(($(date +%s) - t0))" >&2
    explain_failure "$from" >&2
    echo "lab: the whole output is in $log" >&2
    exit 1
  fi
}
step "creating the hosts (systemd, SSH, sudo user labadmin)" tests/lab/labctl up "$LAB_NAME" "$release"
step "preparing the lab's services (Ralph LRS, git server, a running Pod frontal and encoding host)" \
  ansible-playbook "${inventory[@]}" tests/playbooks/lab_prepare.yml
step "deploying the xAPI pipeline with playbooks/site.yml" \
  ansible-playbook "${inventory[@]}" playbooks/site.yml
step "sending one statement from the frontal, as Pod's view does" \
  ansible-playbook "${inventory[@]}" tests/playbooks/lab_demo.yml
stored=$(grep -o 'The LRS stored statement [0-9a-f-]*' "$log" | tail -n 1)
echo "lab: ${stored:-the LRS stored the statement (see the log)}"
echo "lab: ready in $(($(date +%s) - start)) s. Hosts:$(for h in ${LAB_HOSTS:-frontal encoding lrs}; do printf ' %s-%s' "$LAB_NAME" "$h"; done)"
echo "lab: enter one with: CONTAINERS_CONF=$CONTAINERS_CONF podman exec -it $LAB_NAME-encoding bash"
echo "lab: remove it with: scripts/lab.sh down"
