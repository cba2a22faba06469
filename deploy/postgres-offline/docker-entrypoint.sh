#!/bin/bash
# The public postgres image's first-start behaviour, for deploy/postgres-offline.Dockerfile:
# initialise an empty PGDATA, run /docker-entrypoint-initdb.d once, then exec the
# server listening on every address. The password never reaches argv: initdb reads
# it from a file, and psql gets no password at all (the init runs over the unix
# socket, where the server trusts only the postgres user during initialisation).
set -Eeuo pipefail

if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        password_file=$POSTGRES_PASSWORD_FILE
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
        password_file=$(mktemp)
        printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    else
        echo "docker-entrypoint: set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD)" >&2
        exit 1
    fi
    # initdb takes the first line of the file; a trailing newline is not part of it.
    initdb --username=postgres --pwfile="$password_file" --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    if [ -z "${POSTGRES_PASSWORD_FILE:-}" ]; then
        rm -f "$password_file"
    fi
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

    pg_ctl --silent --wait --options="-c listen_addresses=''" start
    database=${POSTGRES_DB:-postgres}
    if [ "$database" != postgres ]; then
        psql -X -v ON_ERROR_STOP=1 --dbname=postgres --set=db="$database" \
            -c 'create database :"db"' >/dev/null
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "docker-entrypoint: running $script" >&2
                   psql -X -q -v ON_ERROR_STOP=1 --dbname="$database" -f "$script" ;;
            *.sql.gz) echo "docker-entrypoint: running $script" >&2
                   gzip -dc "$script" | psql -X -q -v ON_ERROR_STOP=1 --dbname="$database" ;;
            *.sh) echo "docker-entrypoint: running $script" >&2
                   . "$script" ;;
            *) [ -e "$script" ] && echo "docker-entrypoint: ignoring $script" >&2 ;;
        esac
    done
    pg_ctl --silent --wait --mode=fast stop
    echo "docker-entrypoint: initialisation complete" >&2
fi

exec postgres -c listen_addresses='*' "${@:2}"
