#!/usr/bin/env bash
# Runs every test of the collection, after scripts/setup.sh has installed what they need:
#   yamllint, ansible-lint (production profile), ansible-test sanity, the unit tests, and
#   `molecule test` for every scenario (real containers, real Redis, Celery, Ralph and git).
# Usage: scripts/test.sh [STAGE...]   stages: yamllint ansible-lint sanity units molecule
#        MOLECULE_SCENARIOS="default" scripts/test.sh molecule   (a subset of scenarios)
# It runs every stage, prints a summary, and exits non-zero if any stage failed.
set -uo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$project" || exit 1

bash scripts/setup.sh || exit 1
export PATH="$project/.venv/bin:$PATH"
export CONTAINERS_CONF="$project/tests/lab/containers.conf"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

scenarios=${MOLECULE_SCENARIOS:-"default debian13 all_in_one xapi_check scale_out faults"}
stages=${*:-"yamllint ansible-lint sanity units molecule"}

# ansible-test needs the collection at .../ansible_collections/esup_pod/xapi: copy the tracked and
# new files there. Its --venv bootstrap downloads get-pip from a host that may be unreachable; a
# local stand-in built on ensurepip does the same job.
sanity() {
  local root=/tmp/esup-pod-xapi-sanity dest pipver cache
  dest="$root/ansible_collections/esup_pod/xapi"
  rm -rf "$root" && mkdir -p "$dest"
  # Tracked and new files; a tracked file deleted in the work tree is left out, any other failed copy
  # fails the stage.
  git ls-files -z --cached --others --exclude-standard | grep -zv '^ansible_collections/' |
    while IFS= read -r -d '' f; do
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done | xargs -0 -r cp --parents -P -t "$dest/" || {
    echo "sanity: could not copy the collection to $dest" >&2
    return 1
  }
  pipver=$(grep -o "pip='[0-9.]*'" .venv/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py |
    head -n1 | tr -dc '0-9.')
  cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cat >"$cache" <<'PY'
# Stand-in for ansible-test's get-pip bootstrap: pip from ensurepip, then the requested packages.
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
PY
  (cd "$dest" && ansible-test sanity --venv --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    --color no --exclude tests/fixtures/)
}

units() {
  pytest -p no:cacheprovider tests/unit
  local rc=$?
  if [ "$rc" = 5 ]; then
    echo "units: pytest collected no test: that is a failure here" >&2
    return 1
  fi
  return "$rc"
}

molecule_all() {
  local s rc=0
  for s in $scenarios; do
    echo "=== molecule test -s $s"
    molecule test -s "$s" || { echo "molecule scenario $s FAILED" >&2; rc=1; }
  done
  return "$rc"
}

passed=0 failed=0 failures=""
for stage in $stages; do
  echo "=== stage: $stage"
  start=$(date +%s)
  case "$stage" in
    yamllint) yamllint --strict . ;;
    ansible-lint) ansible-lint --profile production ;;
    sanity) sanity ;;
    units) units ;;
    molecule) molecule_all ;;
    *) echo "unknown stage $stage" >&2; false ;;
  esac
  rc=$?
  echo "=== stage $stage: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $(($(date +%s) - start)) s"
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures="$failures $stage"; fi
done
[ -z "$failures" ] || echo "failed stages:$failures"
echo "stages: $passed passed, $failed failed"
[ "$failed" = 0 ]
