#!/usr/bin/env bash
# RocketMQ keeps fast-try under bin/dledger/; RaftMQ's lives in bin/fast-try.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../fast-try.sh" "$@"
