#!/usr/bin/env bash
# ensure-promtool.sh: make sure Prometheus's promtool is installed (Debian's
# `prometheus` package ships it as /usr/bin/promtool) for the monitoring
# tests' `promtool check metrics` and `check rules`, without starting the
# package's Prometheus server (see ensure-deb.sh).
exec bash "$(dirname -- "${BASH_SOURCE[0]}")/../ensure-deb.sh" promtool /usr/bin/promtool prometheus --no-services
