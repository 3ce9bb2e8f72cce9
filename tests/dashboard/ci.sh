#!/usr/bin/env bash
# The built-in dashboard in a real headless Chromium (Debian's chromium, driven by npm
# puppeteer-core) against a fast-try group, as `.ci/run` runs it: tests/dashboard/dashboard.js
# clicks through the cluster, topics, messages and consumers pages and checks them against
# mqadmin; a screenshot of each page is kept in $DASHBOARD_WORK/shots.
#
# Installs chromium with apt when run as root and it is missing. Environment: RAFTMQ_BIN
# (default target/release), DASHBOARD_WORK (node_modules, group, shots; default target/dashboard).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
WORK=${DASHBOARD_WORK:-$ROOT/target/dashboard}
export RAFTMQ_RUN_DIR="$WORK/fast-try"
export RAFTMQ_CONF_DIR="$WORK/conf"
BROKERS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"
mkdir -p "$WORK/node" "$RAFTMQ_CONF_DIR"

CHROMIUM=$(command -v chromium || true)
if [ -z "$CHROMIUM" ] && [ "$(id -u)" = 0 ]; then
  echo "== installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  CHROMIUM=$(command -v chromium)
fi
[ -n "$CHROMIUM" ] || { echo "dashboard: chromium is missing (apt-get install chromium)" >&2; exit 1; }

if ! cmp -s tests/dashboard/package-lock.json "$WORK/node/package-lock.json" || [ ! -d "$WORK/node/node_modules/puppeteer-core" ]; then
  cp tests/dashboard/package.json tests/dashboard/package-lock.json "$WORK/node/"
  (cd "$WORK/node" && npm ci --no-audit --no-fund --silent)
fi

# fast-try's confs (metrics and dashboard on 5557-5559), with diskMaxUsedSpaceRatio=95 so a CI
# host whose disk is over 75 % does not refuse sends.
for n in n0 n1 n2; do
  { cat "conf/dledger/broker-$n.conf"; echo "diskMaxUsedSpaceRatio = 95"; } >"$RAFTMQ_CONF_DIR/broker-$n.conf"
done
cleanup() { bin/fast-try.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
rm -rf /tmp/rmqstore/node00 /tmp/rmqstore/node01 /tmp/rmqstore/node02
bin/fast-try.sh start >"$WORK/fast-try.log" 2>&1 || { cat "$WORK/fast-try.log"; exit 1; }

echo "== dashboard in $("$CHROMIUM" --version 2>/dev/null | head -1)"
NODE_PATH="$WORK/node/node_modules" node tests/dashboard/dashboard.js \
  --dashboard http://127.0.0.1:5557 --brokers "$BROKERS" --mqadmin "$BIN/mqadmin" \
  --shots "$WORK/shots" --chromium "$CHROMIUM"
