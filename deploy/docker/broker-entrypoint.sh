#!/bin/sh
# RaftMQ's container entrypoint for a broker pod of a StatefulSet: renders this pod's broker.conf
# from its stable identity, waits until its own peer name resolves, and execs mqbroker (PID 1,
# so the kubelet's SIGTERM reaches it: a leader hands leadership off before it drains).
#
#   POD_NAME        metadata.name, e.g. raftmq-broker-2: the ordinal gives dLegerSelfId n2
#   POD_NAMESPACE   metadata.namespace
#   POD_IP          status.podIP: brokerIP1, the address routes and the NameServer give clients
#   PEER_SERVICE    the headless Service of the set (its pods' DNS names are the Raft peers)
#   REPLICAS        the set's replicas: one dLegerPeers entry per ordinal
#   RAFT_PORT       the Raft port (default 40911)
#   CLUSTER_DOMAIN  default cluster.local
#   BASE_CONF       the common keys (the ConfigMap's broker.conf)
#   CONF_OUT        where the rendered conf goes (default /tmp/broker.conf)
#   RENDER_ONLY=1   print the rendered conf and exit (for tests)
set -eu
fail() { echo "raftmq-broker-entrypoint: $*" >&2; exit 1; }
: "${POD_NAME:?POD_NAME must be set (metadata.name)}"
: "${POD_NAMESPACE:?POD_NAMESPACE must be set (metadata.namespace)}"
: "${PEER_SERVICE:?PEER_SERVICE must be set (the headless Service)}"
: "${REPLICAS:?REPLICAS must be set (the StatefulSet replicas)}"
: "${BASE_CONF:?BASE_CONF must be set (the ConfigMap broker.conf)}"
RAFT_PORT=${RAFT_PORT:-40911}
CONF_OUT=${CONF_OUT:-/tmp/broker.conf}
ordinal=${POD_NAME##*-}
case $ordinal in '' | *[!0-9]*) fail "POD_NAME=$POD_NAME does not end in a StatefulSet ordinal" ;; esac
case $REPLICAS in '' | *[!0-9]*) fail "REPLICAS=$REPLICAS is not a number" ;; esac
[ "$ordinal" -lt "$REPLICAS" ] || fail "ordinal $ordinal is not below REPLICAS=$REPLICAS"
set_name=${POD_NAME%-*}
domain="$PEER_SERVICE.$POD_NAMESPACE.svc.${CLUSTER_DOMAIN:-cluster.local}"
peers=""
i=0
while [ "$i" -lt "$REPLICAS" ]; do
  peers="${peers:+$peers;}n$i-$set_name-$i.$domain:$RAFT_PORT"
  i=$((i + 1))
done
{
  cat "$BASE_CONF"
  echo ""
  echo "# rendered by raftmq-broker-entrypoint for $POD_NAME"
  echo "dLegerSelfId = n$ordinal"
  echo "dLegerPeers = $peers"
  [ -n "${POD_IP:-}" ] && echo "brokerIP1 = $POD_IP"
} >"$CONF_OUT"
if [ "${RENDER_ONLY:-}" = 1 ]; then
  cat "$CONF_OUT"
  exit 0
fi
# The headless Service publishes not-ready addresses, so the name resolves once the pod exists;
# the Raft port binds that name.
self="$set_name-$ordinal.$domain"
waited=0
until getent hosts "$self" >/dev/null 2>&1; do
  waited=$((waited + 1))
  [ "$waited" -lt 120 ] || fail "$self does not resolve after 120 s"
  sleep 1
done
exec mqbroker -c "$CONF_OUT"
