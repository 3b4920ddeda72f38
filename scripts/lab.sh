#!/usr/bin/env bash
# The self-contained lab: three local containers (frontal, encoding, lrs) on a private podman
# network, a real Ralph LRS, the Pod fixture served over git, then playbooks/site.yml deploys the
# real pipeline and one statement goes from Pod's task on the frontal, through Redis and the
# encoding host's Celery worker, into the LRS. It prints that statement's id.
#   scripts/lab.sh          (re)create the lab and deploy: LAB_NAME (default xapi-lab), LAB_RELEASE
#                           (bookworm or trixie)
#   scripts/lab.sh down     remove it
set -euo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$project"
export LAB_NAME=${LAB_NAME:-xapi-lab}
release=${LAB_RELEASE:-bookworm}

bash scripts/setup.sh
export PATH="$project/.venv/bin:$PATH"
export CONTAINERS_CONF="$project/tests/lab/containers.conf"

if [ "${1:-}" = down ]; then
  exec tests/lab/labctl down "$LAB_NAME"
fi

start=$(date +%s)
step() {  # step WHAT COMMAND...: run a step and say how long it took
  local what=$1 t0
  shift
  echo "lab: $what"
  t0=$(date +%s)
  "$@"
  echo "lab: $what: done in $(($(date +%s) - t0)) s"
}
step "creating the hosts" tests/lab/labctl up "$LAB_NAME" "$release"
step "preparing the lab's services (Ralph LRS, git server, an existing Pod frontal)" \
  ansible-playbook -i inventory/lab tests/playbooks/lab_prepare.yml
step "deploying the xAPI pipeline with playbooks/site.yml" \
  ansible-playbook -i inventory/lab playbooks/site.yml
step "sending one statement from the frontal, as Pod's view does" \
  ansible-playbook -i inventory/lab tests/playbooks/lab_demo.yml
echo "lab: ready in $(($(date +%s) - start)) s. Hosts: $LAB_NAME-frontal $LAB_NAME-encoding $LAB_NAME-lrs"
echo "lab: enter one with: CONTAINERS_CONF=$CONTAINERS_CONF podman exec -it $LAB_NAME-encoding bash"
echo "lab: remove it with: scripts/lab.sh down"
