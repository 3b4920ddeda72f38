#!/bin/sh
# Stops the Celery workers of Pod's xAPI app that no unit of the role runs, and prints their ids.
# $1: the app's module as a regular expression; $2: the start of the units' names (celeryd-xapi@).
set -u
pids=$(for pid in $(pgrep -f "$1.* worker|worker.*$1" || true); do
    grep -q "$2" "/proc/$pid/cgroup" 2>/dev/null || echo "$pid"
done)
[ -n "$pids" ] || exit 0
# shellcheck disable=SC2086 # one word a process id
echo $pids
# shellcheck disable=SC2086
kill -TERM $pids 2>/dev/null || true
# shellcheck disable=SC2016,SC2086 # the inner script's own variable; one word a process id
timeout 60 sh -c 'for pid; do tail --pid="$pid" -f /dev/null; done' - $pids || kill -KILL $pids 2>/dev/null || true
