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

# The property tests draw their cases from PROPTEST_RNG_SEED: unless it is
# set, the commit's own (the first 15 hex digits of HEAD), so every commit
# explores other cases while a run on one commit repeats exactly — a CI
# failure is reproduced with the seed printed here. PROPTEST_CASES=3000 (and
# another seed) makes a longer exploration.
seed_from="set by the caller"
if [[ -z "${PROPTEST_RNG_SEED:-}" ]]; then
  # This checkout's own HEAD (not that of a repository it was unpacked in).
  top=$(git rev-parse --show-toplevel 2>/dev/null || true)
  if [[ -n "$top" && "$(cd "$top" && pwd -P)" == "$(pwd -P)" ]] &&
    head=$(git rev-parse HEAD 2>/dev/null); then
    PROPTEST_RNG_SEED=$((16#${head:0:15}))
    seed_from="from the commit ${head:0:12}"
  else
    PROPTEST_RNG_SEED=20261207
    seed_from="fixed: git cannot read this checkout's commit"
  fi
  export PROPTEST_RNG_SEED
fi
echo "property tests: PROPTEST_RNG_SEED=$PROPTEST_RNG_SEED ($seed_from)${PROPTEST_CASES:+ PROPTEST_CASES=$PROPTEST_CASES}" >&2

cargo test --locked --all-features -- --test-threads="${CRISISWATCH_TEST_THREADS:-2}"
