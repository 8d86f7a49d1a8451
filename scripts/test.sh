#!/usr/bin/env bash
# Runs the whole crisiswatch test suite on a fresh machine.
#
# Installs what the tests need that cargo does not fetch, then runs every test
# target (unit, property, golden replay, CLI, integration). Set
# CRISISWATCH_SKIP_INSTALL=1 to skip the install step.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${CRISISWATCH_SKIP_INSTALL:-0}" != "1" ]]; then
  scripts/install-test-deps.sh
fi

cargo test --locked --all-features -- --test-threads="${CRISISWATCH_TEST_THREADS:-2}"
