#!/usr/bin/env bash
# ensure-chromium.sh: make sure Debian's chromium is at /usr/bin/chromium, the
# browser module/internal/browser's end-to-end test drives (see ensure-deb.sh).
exec bash "$(dirname -- "${BASH_SOURCE[0]}")/../ensure-deb.sh" chromium /usr/bin/chromium chromium
