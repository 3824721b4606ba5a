# Twenty's database set-up and upgrade (charts/twenty/templates/migrations.yaml). Runs in the
# twentycrm/twenty image, in packages/twenty-server. Any failed step ends the Job non-zero.
set -eu
export NO_COLOR=1 FORCE_COLOR=0   # plain text, so the status check below can read it
log() { printf '%s migrate %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${TWENTY_IMAGE_TAG:-?}" "$*"; }

log "checking for the core schema through PG_DATABASE_URL"
has_core=$(psql "$PG_DATABASE_URL" -v ON_ERROR_STOP=1 -tAc \
  "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = 'core')" | tr -d '[:space:]')
case "$has_core" in
  t) log "core schema present" ;;
  f)
    log "empty database: database:init:prod (setup-db, then every instance command)"
    yarn database:init:prod
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
