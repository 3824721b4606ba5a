# Twenty's database set-up and upgrade (charts/twenty/templates/migrations.yaml). Runs in the
# twentycrm/twenty image, in packages/twenty-server. Any failed step ends the Job non-zero.
set -eu
export NO_COLOR=1 FORCE_COLOR=0   # plain text, so the status check below can read it
log() { printf '%s migrate %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${TWENTY_IMAGE_TAG:-?}" "$*"; }

# Three states. No core schema: a new database, set it up. Core schema with Twenty's TypeORM migrations table
# (core._typeorm_migrations, filled by database:migrate:prod, the last step of database:init:prod) and a core
# table of the migrations (core.workspace): set up, upgrade it. Core schema without them: an earlier set-up died
# half-way (setup-db creates the schema first); running the upgrade on it would build on a broken base, so stop
# and say how to recover (docs/failure-recovery.md, "Half-initialised database").
q() { psql "$PG_DATABASE_URL" -v ON_ERROR_STOP=1 -tAc "$1" | tr -d '[:space:]'; }
log "checking the core schema through PG_DATABASE_URL"
has_core=$(q "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = 'core')")
case "$has_core" in
  f)
    log "empty database: database:init:prod (setup-db, then every instance command)"
    yarn database:init:prod
    ;;
  t)
    tables=$(q "SELECT to_regclass('core._typeorm_migrations') IS NOT NULL
                  AND to_regclass('core.workspace') IS NOT NULL")
    migrations=0
    if [ "$tables" = t ]; then
      migrations=$(q "SELECT count(*) FROM core._typeorm_migrations")
    fi
    if [ "$tables" != t ] || [ "$migrations" = 0 ]; then
      log "FAILED: the core schema exists but Twenty's set-up never finished (no core._typeorm_migrations rows or" \
        "no core.workspace): a set-up that died half-way. If this database never held data, drop the schema" \
        "(DROP SCHEMA core CASCADE) and apply again; otherwise restore the last dump (docs/failure-recovery.md)"
      exit 1
    fi
    log "core schema set up ($migrations TypeORM migrations recorded)"
    ;;
  *) log "unexpected answer from PostgreSQL: '$has_core'"; exit 1 ;;
esac

log "cache:flush"
yarn command:prod cache:flush
log "upgrade (instance and workspace commands up to this version)"
yarn command:prod upgrade
# After upgrade, not before: run-instance-commands refuses to run while workspaces are behind the
# previous version, which upgrade (able to cross several versions) has just fixed. It runs whatever
# upgrade's forward cursor skipped (pending legacy TypeORM migrations, instance commands); done ones are no-ops.
log "database:migrate:prod (pending TypeORM migrations and instance commands)"
yarn database:migrate:prod
log "cache:flush"
yarn command:prod cache:flush

# upgrade:status always exits 0 (it logs its own errors), so its summary is read instead.
log "upgrade:status"
status=$(yarn command:prod upgrade:status)
printf '%s\n' "$status"
esc=$(printf '\033')
plain=$(printf '%s\n' "$status" | sed "s/${esc}\[[0-9;]*m//g")
if ! printf '%s\n' "$plain" | grep -q '^ *Instance: Up to date *$'; then
  log "FAILED: the instance is not up to date (see the status above)"
  exit 1
fi
if ! printf '%s\n' "$plain" | grep -Eq '^ *(No workspaces|Workspaces: [0-9]+ up to date, 0 behind, 0 failed)'; then
  log "FAILED: a workspace is behind or failed (see the status above)"
  exit 1
fi
log "schema up to date"

# Cron registration: as upstream, a failure is a warning. The jobs live in Redis and are registered
# again by the next release's Job; failing here would hold back a migrated schema for a queue entry.
if yarn command:prod cron:register:all; then
  log "cron jobs registered"
else
  log "WARNING: cron:register:all failed; background syncs are not scheduled until the next release"
fi
log "done"
