#!/usr/bin/env bash
# Starts or stops the peers used for side-by-side benchmarks, on loopback only:
#   kinesalite 3.3.3       on 127.0.0.1:4571 (in memory)
#   kinesis-local 0.6.2    on 127.0.0.1:4572 (the Node build of kinesis-mock; its address is
#                          hard-coded to 0.0.0.0, so a copy with 127.0.0.1 is run instead)
#   scripts/peers.sh start | stop
set -euo pipefail
cd "$(dirname "$0")/peers"
case "${1:-}" in
start)
    if [ ! -d node_modules/kinesalite ] || [ ! -d node_modules/kinesis-local ]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
    # It reads server.json from its working directory: run the copy beside the original.
    sed 's/0\.0\.0\.0/127.0.0.1/g' node_modules/kinesis-local/main.js > node_modules/kinesis-local/main-loopback.js
    nohup node kinesalite.js 4571 > kinesalite.log 2>&1 &
    echo $! > kinesalite.pid
    (cd node_modules/kinesis-local && KINESIS_MOCK_PLAIN_PORT=4572 KINESIS_MOCK_TLS_PORT=4573 SHOULD_PERSIST_DATA=false \
        exec nohup node main-loopback.js > ../../kinesis-local.log 2>&1) &
    echo $! > kinesis-local.pid
    for port in 4571 4572; do
        for _ in $(seq 1 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
            sleep 0.1
        done
    done
    echo "peers: kinesalite on 127.0.0.1:4571, kinesis-local on 127.0.0.1:4572"
    ;;
stop)
    for p in kinesalite kinesis-local; do
        if [ -f "$p.pid" ]; then kill "$(cat "$p.pid")" 2>/dev/null || true; rm -f "$p.pid"; fi
    done
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
