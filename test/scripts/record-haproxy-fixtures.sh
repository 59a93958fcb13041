#!/usr/bin/env bash
# Records real HAProxy runtime API replies into test/fixtures/haproxy/ so that the protocol
# parsers are tested against what HAProxy really prints, not what we believe it prints.
#
# Usage: test/scripts/record-haproxy-fixtures.sh [output-dir]
#
# Starts its own haproxy from a temporary directory (Unix sockets only: no TCP port is used),
# puts servers into the states we care about (UP, DOWN, MAINT, MAINT via tracking, DRAIN,
# weight 0, re-enabled after `disabled`, no check), holds two sessions open on one server, then
# records every request as NAME.request.txt (the exact line sent) and the reply as
# NAME.reply.txt (the exact bytes received). Everything it starts is stopped on exit.
set -euo pipefail

command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 2; }
command -v socat >/dev/null || { echo "socat is not installed (apt-get install socat)" >&2; exit 2; }

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$repo_root/test/fixtures/haproxy}
mkdir -p "$out"

work=$(mktemp -d "${TMPDIR:-/tmp}/haproxy-fixtures.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

admin=$work/admin.sock
operator=$work/operator.sock
big_servers=200

{
  cat <<EOF
global
  stats socket $admin level admin
  stats socket $operator level operator

defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s

# Health checks connect here, and held client sessions end up here: the inspect delay keeps
# each connection open without any helper process.
frontend sink
  bind unix@$work/sink.sock
  tcp-request inspect-delay 60s
  tcp-request content accept if WAIT_END

frontend fe-ingest
  bind unix@$work/fe-ingest.sock
  default_backend ingest

backend ingest
  balance leastconn
  default-server inter 100ms fall 1 rise 1
  use-server ing-a if { always_true }
  server ing-a unix@$work/sink.sock check weight 100
  server ing-b unix@$work/sink.sock check weight 100
  server ing-m unix@$work/sink.sock check weight 100
  server ing-t unix@$work/sink.sock track ingest/ing-m weight 100
  server ing-d unix@$work/sink.sock check weight 100
  server ing-z unix@$work/sink.sock check weight 100
  server ing-x unix@$work/missing.sock check weight 100
  server ing-c unix@$work/sink.sock weight 100 disabled
  server node.eu-1:7000 127.0.0.1:9 weight 64

backend static
  balance static-rr
  server st-a 127.0.0.1:9 weight 10
  server st-b 127.0.0.1:9 weight 20

backend rr
  balance roundrobin
  server rr-a 127.0.0.1:9 weight 1
  server rr-b 127.0.0.1:9 weight 5

backend src-map
  balance source
  server sm-a 127.0.0.1:9 weight 10
  server sm-b 127.0.0.1:9 weight 10

backend src-cons
  balance source
  hash-type consistent
  server sc-a 127.0.0.1:9 weight 10
  server sc-b 127.0.0.1:9 weight 10

backend empty
  balance leastconn

backend big
  balance leastconn
EOF
  for i in $(seq 1 "$big_servers"); do
    printf '  server big-%03d 127.0.0.%d:9 weight 100\n' "$i" $(((i % 250) + 1))
  done
} >"$work/haproxy.cfg"

haproxy -c -q -f "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

send() { # send SOCKET LINE: one non-interactive batch, HAProxy closes after the reply
  printf '%s\n' "$2" | socat -t2 stdio "UNIX-CONNECT:$1"
}

wait_for() { # wait_for DESCRIPTION COMMAND...: retry for up to 10 s
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  cat "$work/haproxy.log" >&2
  exit 1
}

status_of() { # status_of BACKEND SERVER: the show stat status column, read by header name
  send "$admin" "show stat $1 4 -1" | awk -F, -v srv="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == "status") col = i; next }
    $2 == srv { print $col }'
}

server_is() { [ "$(status_of "$1" "$2")" = "$3" ]; }

sessions_on() { # sessions_on BACKEND SERVER COUNT: the show stat scur column equals COUNT
  send "$admin" "show stat $1 4 -1" | awk -F, -v srv="$2" -v want="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == "scur") col = i; next }
    $2 == srv && $col == want { ok = 1 }
    END { exit !ok }'
}

wait_for "the admin socket" test -S "$admin"
wait_for "ing-a to pass its check" server_is ingest ing-a UP
wait_for "ing-x to fail its check" server_is ingest ing-x DOWN

# Operator actions that the weighter must respect.
send "$admin" "set server ingest/ing-b weight 80; set server ingest/ing-m state maint; set server ingest/ing-d state drain; set server ingest/ing-z weight 0; set server ingest/ing-c state ready" >/dev/null

# Two long-lived client sessions, pinned to ing-a by use-server.
for _ in 1 2; do
  socat -u -T 60 "UNIX-CONNECT:$work/fe-ingest.sock" STDOUT >/dev/null 2>&1 &
  pids+=($!)
done
wait_for "two sessions on ing-a" sessions_on ingest ing-a 2

record() { # record NAME SOCKET LINE
  local name=$1 sock=$2 line=$3
  printf '%s\n' "$line" >"$out/$name.request.txt"
  send "$sock" "$line" >"$out/$name.reply.txt"
  echo "recorded $name ($(wc -c <"$out/$name.reply.txt") bytes)"
}

record_interactive() { # record_interactive NAME SOCKET LINE: the same line after `prompt`, as the socket relay sends it
  local name=$1 sock=$2 line=$3
  printf 'prompt\n%s\n' "$line" | socat -t2 stdio "UNIX-CONNECT:$sock" >"$out/$name.interactive.reply.txt"
  echo "recorded $name in interactive mode ($(wc -c <"$out/$name.interactive.reply.txt") bytes)"
}

observe() { printf 'show stat %s 6 -1; show servers state %s' "$1" "$1"; }

# Observation, as the weighter sends it: two commands per backend.
record observe-ingest "$admin" "$(observe ingest)"
record_interactive observe-ingest "$admin" "$(observe ingest)"
record observe-static "$admin" "$(observe static)"
record observe-roundrobin "$admin" "$(observe rr)"
record observe-source-map-based "$admin" "$(observe src-map)"
record observe-source-consistent "$admin" "$(observe src-cons)"
record observe-empty "$admin" "$(observe empty)"
record observe-several "$admin" "$(observe ingest); $(observe static); $(observe rr)"
record observe-operator-socket "$operator" "$(observe ingest)"
record observe-unknown-backend "$admin" "$(observe nobe)"
record_interactive observe-unknown-backend "$admin" "$(observe nobe)"
record observe-frontend-name "$admin" "$(observe fe-ingest)"
record observe-big "$admin" "$(observe big)"

# Weight changes and read-back.
record get-weight "$admin" "get weight ingest/ing-b"
record set-weight-batch "$admin" "set server rr/rr-a weight 40; set server rr/rr-b weight 256; set server rr/rr-a weight 1; get weight rr/rr-a; get weight rr/rr-b; set server src-cons/sc-a weight 33; get weight src-cons/sc-a"
record set-weight-errors "$admin" "set server rr/nosuch weight 5; set server nobe/rr-a weight 5; set server rr/rr-a weight 257; set server static/st-a weight 50; set server src-map/sm-a weight 50; get weight rr/nosuch; get weight nobe/rr-a; set server rr/rr-a weight -5%; set server rr/rr-a weight 7"
record_interactive set-weight-errors "$admin" "set server rr/nosuch weight 5; set server nobe/rr-a weight 5; set server rr/rr-a weight 257; set server static/st-a weight 50; set server src-map/sm-a weight 50; get weight rr/nosuch; get weight nobe/rr-a; set server rr/rr-a weight -5%; set server rr/rr-a weight 7"
record set-weight-static-initial "$admin" "set server static/st-a weight 10; get weight static/st-a"
record set-weight-operator-socket "$operator" "set server rr/rr-a weight 5; get weight rr/rr-a"
record glued-errors-middle "$admin" "set server rr/rr-a weight x; get weight rr/rr-a; set server rr/rr-a weight 5x; get weight rr/rr-a"
record_interactive glued-errors-middle "$admin" "set server rr/rr-a weight x; get weight rr/rr-a; set server rr/rr-a weight 5x; get weight rr/rr-a"
record glued-error-end "$admin" "get weight rr/rr-a; set server rr/rr-a weight 9x"
record_interactive glued-error-end "$admin" "get weight rr/rr-a; set server rr/rr-a weight 9x"
# The doctor's probe: the session's level, read without changing anything (admin vs operator).
record cli-level-admin "$admin" "show cli level; get weight rr/rr-a"
record_interactive cli-level-admin "$admin" "show cli level; get weight rr/rr-a"
record cli-level-operator "$operator" "show cli level; get weight rr/rr-a"

haproxy -v | head -1 >"$out/haproxy-version.txt"
sed "s#$work#/tmp/FIXTURE-DIR#g" "$work/haproxy.cfg" >"$out/haproxy.cfg.txt"
echo "fixtures written to $out"
