#!/usr/bin/env bash
# Checks systemd/mqttbridge.service with systemd's own parser, for CI and before a release.
#
# `systemd-analyze verify` exits 0 on most unit mistakes (an unknown key or a bad value is only
# "ignored" with a message), and exits 1 because the unit's ExecStart binary
# (/opt/mqttbridge/venv/bin/mqttbridge) is not installed on a build machine. So this script:
#   1. verifies a temporary copy whose ExecStart points at the mqttbridge installed here
#      (`command -v mqttbridge`, else `python3 -m mqttbridge`);
#   2. fails on a non-zero exit AND on any message about the unit, so a typo fails CI;
#   3. where systemd-analyze can (systemd >= 250), checks the offline security exposure score,
#      so a hardening option dropped by mistake fails too.
# Needs systemd-analyze (Debian package "systemd"); installs it when missing and allowed to.
set -euo pipefail
cd "$(dirname "$0")"

UNIT=mqttbridge.service
INSTALLED_BIN=/opt/mqttbridge/venv/bin/mqttbridge
# the highest overall exposure accepted, in tenths (systemd-analyze prints 1.6 for today's unit as "16")
MAX_EXPOSURE=${MQTTBRIDGE_MAX_EXPOSURE:-20}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "verify.sh: installing systemd-analyze (Debian package systemd)"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

if bin=$(command -v mqttbridge 2>/dev/null); then
    exec_start="$bin"
else
    exec_start="$(command -v python3) -m mqttbridge"
fi
$exec_start run --help >/dev/null  # the command line the unit runs must exist

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

found=0
while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == "ExecStart=$INSTALLED_BIN "* ]]; then
        line="ExecStart=$exec_start ${line#"ExecStart=$INSTALLED_BIN "}"
        found=1
    fi
    printf '%s\n' "$line"
done <"$UNIT" >"$work/$UNIT"
if [ "$found" != 1 ]; then
    echo "verify.sh: $UNIT has no 'ExecStart=$INSTALLED_BIN ...' line (the documented install path)" >&2
    exit 1
fi

status=0
output=$(systemd-analyze verify --man=no "$work/$UNIT" 2>&1) || status=$?
# Messages about other units come from this machine's own setup, not from ours: shown, not fatal.
ours=$(printf '%s\n' "$output" | grep -F "$UNIT" || true)
others=$(printf '%s\n' "$output" | grep -vF "$UNIT" | grep -v '^$' || true)
[ -z "$others" ] || printf 'verify.sh: note (not about %s):\n%s\n' "$UNIT" "$others" >&2
if [ "$status" != 0 ] || [ -n "$ours" ]; then
    printf 'verify.sh: %s FAILED (systemd-analyze verify exit %s):\n%s\n' "$UNIT" "$status" "${ours:-$output}" >&2
    exit 1
fi
echo "verify.sh: systemd-analyze verify $UNIT: ok"

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    if ! score=$(systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE" "$work/$UNIT" 2>&1); then
        printf '%s\n' "$score" | tail -n 25 >&2
        echo "verify.sh: $UNIT exposure is above $((MAX_EXPOSURE / 10)).$((MAX_EXPOSURE % 10)): was a hardening option removed?" >&2
        exit 1
    fi
    echo "verify.sh: $(printf '%s\n' "$score" | grep -F 'Overall exposure level' | sed 's/^→ *//')"
else
    echo "verify.sh: this systemd-analyze cannot score a unit offline (needs systemd >= 250); skipped"
fi
