#!/usr/bin/env bash
# Installs the external programs the test suite drives for real.
# Idempotent: every step is skipped when its program is already present.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
if ((${#need_apt[@]})); then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
