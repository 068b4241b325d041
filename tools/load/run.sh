#!/usr/bin/env bash
# The vote path against Postgres' own insert ceiling, measured in one run on this machine:
#   1. pgbench: single-row inserts, 16 clients, $SECONDS_EACH s  -> the two-insert ceiling
#      (a vote cycle stores an assignment and a vote: ceiling = tps / 2);
#   2. arenaxl serve on a fresh database with the study of `bench votes`, its rate limits
#      raised through the configuration, driven by wrk (tools/load/vote-cycle.lua) over
#      $CONNECTIONS connections for $SECONDS_EACH s;
#   3. the ratio, wrk's latency percentiles, acknowledged votes vs votes stored, and the
#      balance (comparisons per model pair, model A's sides);
#   4. the machine's CPU time per vote over the wrk window (all of it, the serve processes',
#      wrk's; Postgres is most of the rest): steadier than throughput on a noisy machine.
# Needs: a release build (cargo build --release), wrk and pgbench (Debian), Postgres at
# $PGURL (default postgres://postgres@127.0.0.1:5432). Usage: tools/load/run.sh [SERVERS]
# SERVERS > 1 starts that many `serve` processes on the database and spreads the wrk
# threads over them (one balance: see the scheduler docs). SETUP_ARGS passes options to
# `bench votes-setup` (e.g. SETUP_ARGS="--models 10" for 45 model pairs instead of 3).
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVERS=${1:-1}
SECONDS_EACH=${SECONDS_EACH:-10}
CONNECTIONS=${CONNECTIONS:-64}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
BIN=${BIN:-target/release/arenaxl}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-client" >&2; exit 2; }

DB="arenaxl_load_$$"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
psql -q "$PGURL/postgres" -c "CREATE DATABASE $DB" >/dev/null

# 1. Postgres' own ceiling: one-row inserts into a table shaped like votes.
psql -q "$PGURL/$DB" -c "CREATE TABLE pgbench_votes (id bigserial PRIMARY KEY, assignment uuid, choice text, response_ms int, created_at timestamptz DEFAULT now())" >/dev/null
echo "INSERT INTO pgbench_votes (assignment, choice, response_ms) VALUES (gen_random_uuid(), 'left', 1500);" > "$WORK/insert.sql"
PG_TPS=$(pgbench -n -c 16 -j 2 -T "$SECONDS_EACH" -f "$WORK/insert.sql" "$PGURL/$DB" 2>/dev/null \
    | awk '/^tps/ { print int($3); exit }')
psql -q "$PGURL/$DB" -c "DROP TABLE pgbench_votes" >/dev/null

# 2. The platform: the bench study, then the servers with the limits out of the way.
DATABASE_URL="$PGURL/$DB" "$BIN" bench votes-setup --data-dir "$WORK/data" ${SETUP_ARGS:-} >/dev/null
export ARENAXL_JOIN_PER_SEC=1000000 ARENAXL_JOIN_BURST=1000000 \
       ARENAXL_VOTE_PER_SEC=1000000 ARENAXL_VOTE_BURST=1000000
URLS=()
for i in $(seq 1 "$SERVERS"); do
    PORT=$((18080 + i))
    DATABASE_URL="$PGURL/$DB" RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" \
        >"$WORK/serve-$i.log" 2>&1 &
    PIDS+=($!)
    URLS+=("http://127.0.0.1:$PORT")
done
for u in "${URLS[@]}"; do
    for _ in $(seq 1 100); do curl -fs "$u/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done

PER=$(( CONNECTIONS / SERVERS ))
# CPU time in ticks (USER_HZ, 100/s): the whole machine (user, nice, system, irq, softirq)
# and the serve processes.
machine_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
serve_cpu() { local t=0; for p in "${PIDS[@]}"; do t=$(( t + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done; echo "$t"; }
M0=$(machine_cpu); S0=$(serve_cpu)
WRK=()
for i in "${!URLS[@]}"; do
    /usr/bin/time -f "%U %S" -o "$WORK/wrk-cpu-$i" wrk -t "$PER" -c "$PER" -d "${SECONDS_EACH}s" --latency -s tools/load/vote-cycle.lua "${URLS[$i]}" \
        >"$WORK/wrk-$i.log" 2>&1 &
    WRK+=($!)
done
wait "${WRK[@]}" || true
M1=$(machine_cpu); S1=$(serve_cpu)
sleep 0.5

ACKED=0; CYCLES=0
for i in "${!URLS[@]}"; do
    log="$WORK/wrk-$i.log"
    grep '^wrk:' "$log" | sed "s|^wrk:|  ${URLS[$i]}:|"
    ACKED=$(( ACKED + $(awk -F= '/^ACKED=/ { print $2 }' "$log") ))
    CYCLES=$(awk -F= -v c="$CYCLES" '/^CYCLES_PER_S=/ { print c + $2 }' "$log")
done
WRK_S=$(cat "$WORK"/wrk-cpu-* | awk '{ s += $1 + $2 } END { print s }')
awk -v m=$(( M1 - M0 )) -v s=$(( S1 - S0 )) -v w="$WRK_S" -v n="$ACKED" 'BEGIN { if (n > 0)
    printf "CPU per vote cycle: %.3f ms in all, of which arenaxl %.3f ms, wrk %.3f ms, the rest (Postgres, kernel) %.3f ms\n",
      m * 10 / n, s * 10 / n, w * 1000 / n, (m * 10 - s * 10 - w * 1000) / n }'
STORED=$(psql -qtA "$PGURL/$DB" -c "SELECT count(*) FROM votes")
CEILING=$(( PG_TPS / 2 ))
echo "pgbench single-row inserts (16 clients, ${SECONDS_EACH} s): $PG_TPS tps -> two-insert ceiling $CEILING cycles/s"
awk -v c="$CYCLES" -v ceil="$CEILING" -v n="$SERVERS" -v conn="$CONNECTIONS" \
    'BEGIN { printf "arenaxl (%d serve process(es), %d connections): %.0f vote cycles/s = %.1f %% of the ceiling\n", n, conn, c, 100 * c / ceil }'
echo "acknowledged $ACKED, stored $STORED: $([ "$ACKED" -le "$STORED" ] && echo 'nothing lost' || echo 'VOTES LOST')"
# The balance every process keeps together: comparisons per model pair, and model A's side.
psql -qtA -F ' ' "$PGURL/$DB" -c "SELECT string_agg(n::text, ' / ' ORDER BY m), max(n) - min(n), max(abs(2 * l - n))
    FROM (SELECT a.model_pair_id m, count(*) n, sum((a.left_image = p.image_a)::int) l
          FROM assignments a JOIN pairs p ON p.id = a.pair_id WHERE NOT a.gold GROUP BY 1) x" |
    awk '{ printf "comparisons per model pair: %s (spread %s); model A left minus right, worst pair: %s\n", substr($0, 1, length($0) - length($NF) - length($(NF-1)) - 2), $(NF-1), $NF }'

[ "$ACKED" -le "$STORED" ]
