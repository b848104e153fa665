#!/bin/sh
# Debian's chromium for the dashboard's browser tests (driven by Playwright; no browser download).
# Idempotent and quiet: does nothing when /usr/bin/chromium is there.
set -eu
[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get; install chromium so that /usr/bin/chromium exists" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq chromium >/dev/null
}
[ -x /usr/bin/chromium ] || { echo "install-browser: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
