#!/usr/bin/env bash
# Installs everything the lab and the tests need on a Debian 12 machine, as root:
#   - Debian packages: podman (with runc, netavark, aardvark-dns, catatonit), debootstrap, git,
#     python3-venv, shellcheck (for ansible-test sanity);
#   - .venv: the pinned toolchain of requirements-dev.txt (ansible-core, the ansible bundle for
#     containers.podman, Molecule, pytest, testinfra, ansible-lint, yamllint, antsibull-changelog).
# It is quick when everything is already there. Sourced or run by scripts/lab.sh and scripts/test.sh.
set -euo pipefail
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs Debian packages (podman, debootstrap) and runs containers"
if ! command -v apt-get >/dev/null 2>&1 || [ ! -f /etc/debian_version ]; then
  die "this needs Debian 12 (apt-get); on another system install podman, runc, debootstrap, git and python3-venv yourself"
fi

packages="podman runc netavark aardvark-dns catatonit debootstrap git python3-venv shellcheck"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

venv="$project/.venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$project/requirements-dev.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned toolchain into .venv (about a minute)"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$project/requirements-dev.txt"
  echo "$want" >"$stamp"
fi
