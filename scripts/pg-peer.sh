#!/usr/bin/env bash
# The peer keyledger is measured against: the activation a team would write by hand on
# PostgreSQL 15 (issues 15 and 16). One transaction per activation: `SELECT … FOR UPDATE`
# on the key row, refuse if blocked or exhausted (recording the refusal), insert the
# machine `ON CONFLICT DO NOTHING`, and if it is new, count it and record the activation;
# one commit (`synchronous_commit = on`). Driven by pgbench, no HTTP layer.
#
#   scripts/pg-peer.sh [--duration SECONDS] [--standby]
#
# Starts a throwaway cluster with scripts/pg-cluster.sh on its own loopback ports (with
# --standby, commits wait for the synchronous standby; without, the standby is not waited
# for), loads 1,000 keys, and prints activations per second at concurrency 1 and 64 over
# 1,000 keys, and at 64 when every activation hits one hot key. Stops the cluster after.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=12
STANDBY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --standby) STANDBY=1; shift ;;
        *) echo "usage: $0 [--duration SECONDS] [--standby]" >&2; exit 2 ;;
    esac
done

export KEYLEDGER_PG_DIR=${KEYLEDGER_PG_DIR:-$(mktemp -d /tmp/keyledger-peer.XXXXXX)}
rmdir "$KEYLEDGER_PG_DIR" 2>/dev/null || true
export KEYLEDGER_PG_PRIMARY_PORT=${KEYLEDGER_PG_PRIMARY_PORT:-54331}
export KEYLEDGER_PG_STANDBY_PORT=${KEYLEDGER_PG_STANDBY_PORT:-54332}
trap 'scripts/pg-cluster.sh stop' EXIT
scripts/pg-cluster.sh start >/dev/null

BIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | head -1)
sql() {
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$KEYLEDGER_PG_PRIMARY_PORT" -U postgres -d keyledger "$@"
}
if [ "$STANDBY" = 0 ]; then
    sql -c "alter system set synchronous_standby_names = ''" -c "select pg_reload_conf()" >/dev/null
fi

sql <<'EOF'
CREATE TABLE keys (key_id bigint PRIMARY KEY, fingerprint bytea UNIQUE NOT NULL,
  lim bigint NOT NULL, granted bigint NOT NULL DEFAULT 0, used bigint NOT NULL DEFAULT 0,
  blocked bool NOT NULL DEFAULT false);
CREATE TABLE machines (key_id bigint NOT NULL, machine text NOT NULL, org text NOT NULL,
  at timestamptz NOT NULL, PRIMARY KEY (key_id, machine));
CREATE TABLE events (seq bigserial PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL,
  body jsonb NOT NULL);
INSERT INTO keys (key_id, fingerprint, lim)
  SELECT k, sha256(k::text::bytea), 1000000000 FROM generate_series(1, 1000) AS k;
CREATE FUNCTION activate(fp bytea, machine_name text, org_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  k keys%ROWTYPE;
  added int;
BEGIN
  SELECT * INTO k FROM keys WHERE fingerprint = fp FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO events (at, actor, body)
      VALUES (now(), 'peer', jsonb_build_object('type', 'activation_refused', 'code', 'unknown_key'));
    RETURN 'unknown_key';
  END IF;
  IF k.blocked OR k.used >= k.lim + k.granted THEN
    INSERT INTO events (at, actor, body)
      VALUES (now(), 'peer', jsonb_build_object('type', 'activation_refused', 'key_id', k.key_id,
              'code', CASE WHEN k.blocked THEN 'key_blocked' ELSE 'insufficient_activations' END));
    RETURN 'refused';
  END IF;
  INSERT INTO machines (key_id, machine, org, at) VALUES (k.key_id, machine_name, org_name, now())
    ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS added = ROW_COUNT;
  IF added = 0 THEN
    RETURN 'already_active';
  END IF;
  UPDATE keys SET used = used + 1 WHERE key_id = k.key_id;
  INSERT INTO events (at, actor, body)
    VALUES (now(), 'peer', jsonb_build_object('type', 'machines_activated', 'key_id', k.key_id,
            'machines', jsonb_build_array(machine_name), 'org', org_name));
  RETURN 'activated';
END $$;
EOF

work=$(mktemp -d)
cat >"$work/many.sql" <<'EOF'
\set k random(1, 1000)
\set m random(1, 2000000000)
SELECT activate(sha256(:k::text::bytea), 'm' || :m || '-' || :client_id, 'contoso');
EOF
cat >"$work/hot.sql" <<'EOF'
\set m random(1, 2000000000)
SELECT activate(sha256('1'::bytea), 'm' || :m || '-' || :client_id, 'contoso');
EOF

run() {
    local label=$1 clients=$2 file=$3 tps
    tps=$("$BIN/pgbench" -n -c "$clients" -j 2 -T "$DURATION" -M prepared -f "$file" \
        -h 127.0.0.1 -p "$KEYLEDGER_PG_PRIMARY_PORT" -U postgres keyledger 2>/dev/null |
        awk '/^tps = / { print int($3) }')
    echo "$label: $tps activations/s"
}

mode=$([ "$STANDBY" = 1 ] && echo "synchronous standby" || echo "local commit")
echo "hand-written PostgreSQL activation ($mode, ${DURATION} s each, pgbench -M prepared -j 2)"
run "concurrency 1, 1,000 keys " 1 "$work/many.sql"
run "concurrency 64, 1,000 keys" 64 "$work/many.sql"
run "concurrency 64, one hot key" 64 "$work/hot.sql"
rm -rf "$work"
