# Redis's start command (charts/twenty/templates/redis.yaml): write requirepass from REDIS_PASSWORD into the
# config file REDIS_CONF, readable by this user only, then run redis-server on it with the other options ("$@").
set -eu
umask 077
: "${REDIS_PASSWORD:?the REDIS_PASSWORD key is missing from the Secret}"
printf 'requirepass "%s"\n' "$REDIS_PASSWORD" > "$REDIS_CONF"
unset REDIS_PASSWORD
exec redis-server "$REDIS_CONF" "$@"
