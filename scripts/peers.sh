#!/usr/bin/env bash
# Installs the reference peers that the StatsD parity test and benchmark run against:
# Etsy statsd 0.9.0 (npm) into build/peers. Idempotent; does nothing without node and npm,
# so the tests that need the daemon skip instead of failing on machines without Node.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/build/peers"
STATSD_VERSION="0.9.0"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "peers.sh: node/npm not found; skipping the Etsy statsd install (its tests will skip)" >&2
  exit 0
fi
installed="$(node -p "require('$PEERS/node_modules/statsd/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$STATSD_VERSION" ]; then
  mkdir -p "$PEERS"
  # Its optional native deps (modern-syslog, unix-dgram) may fail to build; the daemon does not need them.
  npm install --prefix "$PEERS" --no-audit --no-fund --loglevel=error "statsd@$STATSD_VERSION" >/dev/null
fi
