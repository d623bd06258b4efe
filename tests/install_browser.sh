#!/usr/bin/env bash
# The browser test's Chromium and chromedriver (tests/test_browser.py), installed by `make test` when
# missing: Debian's packages chromium and chromium-driver, as root or through passwordless sudo.
# RS_REPRO_CHROME and RS_REPRO_CHROMEDRIVER name another browser and driver, which are used as they are.
# Usage: tests/install_browser.sh [CHROME DRIVER]   (the places expected, /usr/bin/chromium and
# /usr/bin/chromedriver by default, where Debian's packages put them)
# When nothing can be installed, this says so and exits 0: the other tests still run, and the browser
# test fails once with the instruction that fixes it.
set -uo pipefail

chrome="${RS_REPRO_CHROME:-${1:-/usr/bin/chromium}}"
driver="${RS_REPRO_CHROMEDRIVER:-${2:-/usr/bin/chromedriver}}"
if [ -x "$chrome" ] && [ -x "$driver" ]; then
  exit 0
fi
if [ -n "${RS_REPRO_CHROME:-}${RS_REPRO_CHROMEDRIVER:-}" ]; then
  echo "install_browser: RS_REPRO_CHROME/RS_REPRO_CHROMEDRIVER name $chrome and $driver, which are not both" \
       "executables; nothing is installed in their place" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=(env)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n env)
else
  echo "install_browser: Chromium or chromedriver is missing and this user can install no package;" \
       "the browser test will fail until: sudo apt-get install -y chromium chromium-driver" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get on this machine; install Chromium and chromedriver and set" \
       "RS_REPRO_CHROME and RS_REPRO_CHROMEDRIVER to them" >&2
  exit 0
fi
echo "install_browser: installing Debian's chromium and chromium-driver for the browser test"
log="$(mktemp)"
if "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 &&
   "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
     chromium chromium-driver fonts-liberation >>"$log" 2>&1; then
  rm -f "$log"
else
  tail -n 20 "$log" >&2
  rm -f "$log"
  echo "install_browser: apt-get could not install chromium and chromium-driver (messages above);" \
       "the browser test will fail until they are installed" >&2
fi
exit 0
