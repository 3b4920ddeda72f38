#!/usr/bin/env bash
# Runs every test of the collection, after scripts/setup.sh has installed what they need:
#   yamllint, ansible-lint (production profile), the changelog fragments and a trial release (antsibull-changelog,
#   ansible-galaxy collection build), ansible-test sanity and the unit tests on every ansible-core release that
#   meta/runtime.yml claims, the contract tests of the worker's kombu transport (a Redis server of their own, the
#   worker's libraries, on each kombu release the role's pip constraints allow), and `molecule test` for every scenario
#   (real containers, real Redis, Celery, Ralph and git).
# Usage: scripts/test.sh [STAGE...]   stages: yamllint ansible-lint changelog sanity units contract molecule
#        MOLECULE_SCENARIOS="default" scripts/test.sh molecule   (a subset of scenarios, one after the other)
#        MOLECULE_LANES="default,debian13 all_in_one,scale_out" scripts/test.sh molecule   (other lanes: a word per lane)
# It runs every stage, prints a summary, and exits non-zero if any stage failed.
set -uo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$project" || exit 1

bash scripts/setup.sh || exit 1
export PATH="$project/.venv/bin:$PATH"
export CONTAINERS_CONF="$project/tests/lab/containers.conf"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

# Every scenario, in the lanes that run at once (molecule_all): space between lanes, commas within one.
molecule_lanes="default debian13,all_in_one,scale_out"
stages=${*:-"yamllint ansible-lint changelog sanity units contract molecule"}

# The toolchains that sanity and units run with, one per ansible-core release that meta/runtime.yml claims: the
# main one (.venv, requirements-dev.txt) and one per requirements-ansible-2.X.txt (.venv-ansible-2.X); setup.sh
# makes them all.
toolchains=.venv
for req in requirements-ansible-*.txt; do
  [ -e "$req" ] || continue
  v=${req#requirements-ansible-}
  toolchains="$toolchains .venv-ansible-${v%.txt}"
done

core_version() { "$project/$1/bin/python" -c 'from ansible.release import __version__; print(__version__)'; }

# The claim must be what is tested: requires_ansible is ">=2.X.0", and every minor release from 2.X to the main
# toolchain's has a toolchain here.
check_claim() {
  local claim low main tested="" tc minor
  claim=$(python -c 'import yaml; print(yaml.safe_load(open("meta/runtime.yml"))["requires_ansible"])') || return 1
  if ! [[ "$claim" =~ ^\>=2\.([0-9]+)\.0$ ]]; then
    echo "meta/runtime.yml: requires_ansible is \"$claim\", not \">=2.X.0\"" >&2
    return 1
  fi
  low=${BASH_REMATCH[1]}
  for tc in $toolchains; do tested="$tested $(core_version "$tc" | cut -d. -f1,2)"; done
  main=$(core_version .venv | cut -d. -f2)
  for ((minor = low; minor <= main; minor++)); do
    case " $tested " in
      *" 2.$minor "*) ;;
      *) echo "meta/runtime.yml claims $claim but no toolchain tests ansible-core 2.$minor (tested:$tested)" >&2
         return 1 ;;
    esac
  done
  echo "meta/runtime.yml claims $claim; tested with ansible-core:$tested"
}

# ansible-test needs the collection at .../ansible_collections/esup_pod/xapi: copy the tracked and
# new files there. Its --venv bootstrap downloads get-pip from a host that may be unreachable; a
# local stand-in built on ensurepip does the same job. Run once per toolchain, each with its own
# tests/sanity/ignore-2.X.txt.
sanity_one() {
  local tc=$1 version root dest pipver cache start rc
  version=$(core_version "$tc") || { echo "sanity: no ansible-core in $tc: run scripts/setup.sh" >&2; return 1; }
  echo "=== ansible-test sanity with ansible-core $version ($tc)"
  start=$(date +%s)
  # A directory of its own: two clones may run the stage at once.
  root=$(mktemp -d "/tmp/esup-pod-xapi-sanity-$(echo "$version" | cut -d. -f1,2).XXXXXX")
  dest="$root/ansible_collections/esup_pod/xapi"
  mkdir -p "$dest"
  # Tracked and new files; a tracked file deleted in the work tree is left out, any other failed copy
  # fails the stage.
  git ls-files -z --cached --others --exclude-standard | grep -zv '^ansible_collections/' |
    while IFS= read -r -d '' f; do
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done | xargs -0 -r cp --parents -P -t "$dest/" || {
    echo "sanity: could not copy the collection to $dest" >&2
    return 1
  }
  pipver=$(grep -o "pip='[0-9.]*'" "$project/$tc"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py |
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
  (cd "$dest" && PATH="$project/$tc/bin:$PATH" ansible-test sanity --venv \
    --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no --exclude tests/fixtures/)
  rc=$?
  rm -rf "$root"
  echo "=== ansible-test sanity with ansible-core $version: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $(($(date +%s) - start)) s"
  return "$rc"
}

sanity() {
  local tc rc=0
  check_claim || rc=1
  for tc in $toolchains; do sanity_one "$tc" || rc=1; done
  return "$rc"
}

# pytest_in STAGE VENV DIR: the tests of DIR with VENV's python; a run that collects no test fails.
pytest_in() {
  local rc
  "$project/$2/bin/python" -m pytest -p no:cacheprovider "$3"
  rc=$?
  [ "$rc" != 5 ] || echo "$1: pytest collected no test: that is a failure here" >&2
  return "$rc"
}

units() {
  local tc version rc=0
  for tc in $toolchains; do
    version=$(core_version "$tc") || { echo "units: no ansible-core in $tc: run scripts/setup.sh" >&2; rc=1; continue; }
    echo "=== pytest tests/unit with ansible-core $version ($tc)"
    pytest_in units "$tc" tests/unit || rc=1
  done
  return "$rc"
}

# The worker's kombu transport against a redis-server that each test starts and stops, on the worker's own libraries:
# one virtualenv per kombu release that worker_pip_constraints allows (.venv-contract-kombu-X, made by setup.sh).
contract() {
  local kombu venv rc=0
  kombu=$(python tests/contract/requirements.py versions) || return 1
  for kombu in $kombu; do
    venv=.venv-contract-kombu-$kombu
    [ -x "$venv/bin/python" ] || { echo "contract: no $venv: run scripts/setup.sh" >&2; rc=1; continue; }
    echo "=== pytest tests/contract with kombu $kombu ($venv)"
    pytest_in contract "$venv" tests/contract || rc=1
  done
  return "$rc"
}

# The changelog fragments are valid, and the release procedure (docs/releasing.md) works on a throwaway copy of
# the tracked and new files: antsibull-changelog release, then ansible-galaxy collection build.
changelog() {
  local tmp version rc=0
  antsibull-changelog lint || return 1
  version=$(sed -n 's/^version: *//p' galaxy.yml)
  tmp=$(mktemp -d)
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done | xargs -0 -r cp --parents -P -t "$tmp/" &&
    (cd "$tmp" && antsibull-changelog release --version "$version" &&
      antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml &&
      ansible-galaxy collection build --output-path "$tmp/build" &&
      echo "trial release $version: CHANGELOG.rst has $(wc -l <CHANGELOG.rst) lines," \
        "the tarball $(($(stat -c %s build/*.tar.gz) / 1024)) KiB, $(tar tzf build/*.tar.gz | grep -vc '/$') files") || rc=1
  rm -rf "$tmp"
  return "$rc"
}

# A hung scenario fails at its own limit (seconds) instead of using up CI's time; its lab is removed.
scenario_limit() {
  case "$1" in
    default) echo 2700 ;;
    debian13) echo 1800 ;;
    *) echo 1200 ;;
  esac
}

# molecule_lane SCENARIO...: each scenario in turn; non-zero if one failed.
molecule_lane() {
  local s rc=0 limit start
  for s in "$@"; do
    limit=$(scenario_limit "$s")
    echo "=== molecule test -s $s (limit $limit s)"
    start=$(date +%s)
    if ! timeout --kill-after=30 "$limit" molecule test -s "$s"; then
      echo "molecule scenario $s FAILED after $(($(date +%s) - start)) s" >&2
      rc=1
      molecule destroy -s "$s" >/dev/null 2>&1 || true
    else
      echo "=== molecule scenario $s passed in $(($(date +%s) - start)) s"
    fi
  done
  return "$rc"
}

# The scenarios run in lanes, at once: a lab's tests leave about one of the machine's two cores idle (they
# mostly wait on its services), so two labs share it (docs/lab.md, "How long it takes"). Each lane runs its
# scenarios in turn; the output of all but the first lane is printed when it ends. MOLECULE_SCENARIOS runs
# its scenarios in one lane.
molecule_all() {
  local lanes lane rc=0 dir i=0 pids=() logs=()
  if [ -n "${MOLECULE_SCENARIOS:-}" ]; then
    # shellcheck disable=SC2086
    molecule_lane $MOLECULE_SCENARIOS
    return
  fi
  lanes=${MOLECULE_LANES:-"$molecule_lanes"}
  dir=$(mktemp -d /tmp/esup-pod-xapi-lanes.XXXXXX)
  for lane in $lanes; do
    i=$((i + 1))
    [ "$i" = 1 ] && continue
    echo "=== molecule lane $i: ${lane//,/ } (its output follows when it ends)"
    # shellcheck disable=SC2086
    molecule_lane ${lane//,/ } >"$dir/lane-$i.log" 2>&1 &
    pids+=("$!")
    logs+=("$dir/lane-$i.log")
  done
  lane=${lanes%% *}
  echo "=== molecule lane 1: ${lane//,/ }"
  # shellcheck disable=SC2086
  molecule_lane ${lane//,/ } || rc=1
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || rc=1
    echo "=== molecule lane $((i + 2)), its output:"
    cat "${logs[$i]}"
  done
  rm -rf "$dir"
  return "$rc"
}

passed=0 failed=0 failures=""
for stage in $stages; do
  echo "=== stage: $stage"
  start=$(date +%s)
  case "$stage" in
    yamllint) yamllint --strict . ;;
    ansible-lint) ansible-lint --profile production ;;
    changelog) changelog ;;
    sanity) sanity ;;
    units) units ;;
    contract) contract ;;
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
