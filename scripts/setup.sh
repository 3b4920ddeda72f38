#!/usr/bin/env bash
# Installs everything the lab and the tests need on a Debian 12 machine, as root:
#   - Debian packages: podman (with runc, netavark, aardvark-dns, catatonit, and iptables: netavark's
#     firewall backend, which nothing else brings), debootstrap, openssh-client (Ansible reaches the
#     lab hosts over SSH), git, python3-venv, shellcheck (for
#     ansible-test sanity), redis-server (the contract tests start their own server; the service is not used);
#   - .venv: the pinned toolchain of requirements-dev.txt (ansible-core, the ansible bundle for
#     containers.podman, Molecule, pytest, testinfra, ansible-lint, yamllint, antsibull-changelog);
#   - .venv-ansible-2.X, one per requirements-ansible-2.X.txt: the other ansible-core releases that
#     meta/runtime.yml claims, with pytest, for the sanity and units stages of scripts/test.sh;
#   - .venv-contract-kombu-X, one per kombu release that the worker role's pip constraints allow: the
#     worker's own libraries, with pytest, for the contract stage (redis-server runs the broker there).
# Then a smoke test: a throwaway container on a throwaway network. It is quick when everything is
# already there. Run by scripts/lab.sh and scripts/test.sh; any failure is one line on stderr.
set -euo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs Debian packages (podman, debootstrap) and runs containers"
if ! command -v apt-get >/dev/null 2>&1 || [ ! -f /etc/debian_version ]; then
  die "this needs Debian 12 (apt-get); on another system install podman, runc, netavark, iptables, debootstrap, git and python3-venv yourself"
fi

packages="podman runc netavark aardvark-dns catatonit iptables debootstrap openssh-client git python3-venv shellcheck redis-server tcpdump"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed: check this machine's Debian sources and network"
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    die "apt-get install of$missing failed: run it by hand to see why"
fi

# pinned_venv DIR REQUIREMENTS WHAT [fresh]: (re)build the virtualenv DIR from the pinned REQUIREMENTS
# when it is missing or the file changed (its SHA-256 is stamped in DIR); "fresh" removes DIR first.
pinned_venv() {
  local venv=$1 req=$2 what=$3 stamp want
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $what into $(basename "$venv")"
    if [ "${4:-}" = fresh ]; then rm -rf "$venv"; fi
    /usr/bin/python3 -m venv "$venv" || die "python3 -m venv failed: apt-get install -y python3-venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" ||
      die "pip could not install $(basename "$req") into $(basename "$venv"): is PyPI reachable (proxy, CA bundle)?"
    echo "$want" >"$stamp"
  fi
}

pinned_venv "$project/.venv" "$project/requirements-dev.txt" "the pinned toolchain (about a minute)"
for req in "$project"/requirements-ansible-*.txt; do
  [ -e "$req" ] || continue
  name=$(basename "$req" .txt)
  pinned_venv "$project/.venv-${name#requirements-}" "$req" "$(basename "$req") (about 20 s)" fresh
done

# .venv-contract-kombu-X, one per kombu release that worker_pip_constraints allows: the libraries the worker runs
# (Pod's requirements-encode.txt under those constraints) and pytest, for the contract stage of scripts/test.sh. The
# requirements are generated from where they are set, never copied (tests/contract/requirements.py).
contract_reqs=$(mktemp -d)
kombus=$("$project/.venv/bin/python" "$project/tests/contract/requirements.py" versions) ||
  die "could not read the kombu releases that worker_pip_constraints allows (tests/contract/requirements.py versions)"
for kombu in $kombus; do
  req="$contract_reqs/requirements-contract-kombu-$kombu.txt"
  "$project/.venv/bin/python" "$project/tests/contract/requirements.py" pins "$kombu" >"$req" ||
    die "could not write the contract tests' requirements for kombu $kombu"
  pinned_venv "$project/.venv-contract-kombu-$kombu" "$req" "the worker's libraries with kombu $kombu (about 20 s)" fresh
done
rm -rf "$contract_reqs"

# Smoke test: what every lab command needs from podman. A throwaway network, and a container on it
# that runs one command; no image is needed: its root is a folder holding /bin/true and its libraries.
export CONTAINERS_CONF="$project/tests/lab/containers.conf"
smoke=esup-pod-xapi-smoke-$$
rootfs=$(mktemp -d)
cleanup() {
  podman rm -f -t 0 "$smoke" >/dev/null 2>&1 || true
  podman network rm -f "$smoke" >/dev/null 2>&1 || true
  rm -rf "$rootfs"
}
trap cleanup EXIT
for f in /bin/true $(ldd /bin/true | grep -o '/[^ ]*'); do
  cp --parents -L "$f" "$rootfs/"
done
if ! out=$(podman network create "$smoke" 2>&1); then
  die "podman cannot create a network ($(echo "$out" | tail -n1)): apt-get install -y podman netavark aardvark-dns"
fi
if ! out=$(podman run --rm --name "$smoke" --network "$smoke" --rootfs "$rootfs" /bin/true 2>&1); then
  case "$out" in
    *netavark*"No such file or directory"* | *iptables*)
      die "podman cannot start a container on a network: netavark has no firewall backend; install it with: apt-get install -y iptables" ;;
    *)
      die "podman cannot start a container on a network ($(echo "$out" | tail -n1)); see tests/lab/containers.conf and docs/lab.md" ;;
  esac
fi
