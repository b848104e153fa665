#!/bin/sh
# Debian packages the tests run for real, each given as package=path-it-installs: chromium for the
# dashboard's browser tests (driven by Playwright; no browser download) and prometheus, which
# scrapes a live run and a live server. Idempotent and quiet: installs only what is missing.
set -eu
missing=""
for pair in "$@"; do
    [ -x "${pair#*=}" ] || missing="$missing ${pair%%=*}"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-apt: no apt-get; install$missing so that these exist: $*" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq $missing >/dev/null
}
for pair in "$@"; do
    [ -x "${pair#*=}" ] || { echo "install-apt: ${pair%%=*} installed but ${pair#*=} is missing" >&2; exit 1; }
done
