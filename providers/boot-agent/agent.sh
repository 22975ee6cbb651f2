# dmzfleet boot agent: the secure-boot handshake of a real VM (docs/drivers/).
# Shipped as the VM's user data (AWS) or custom data (Azure), after a header
# of settings the driver writes for each boot (renderAgentUserData, index.ts):
#   FLEET_BOOT_URL    the DMZ client's boot endpoint (POST; status at <url>/status)
#   FLEET_VM_ID       the record's VM id
#   FLEET_CLOUD_ID    the cloud's id of this VM
#   FLEET_IMAGE       the real image it booted
#   FLEET_BOOT_TOKEN  the one-time boot token of this boot (empty at first launch: then nothing happens)
#   FLEET_ENCRYPTED   1 when the data volume is LUKS-encrypted with the key the authority releases
#   FLEET_DATA_DEVICE block device of the data volume
# Optional, for tests and unusual images: FLEET_CRYPTSETUP (default cryptsetup),
# FLEET_POWEROFF (default `poweroff`), FLEET_MAPPER_NAME (default fleet-data),
# FLEET_CURL_OPTS (extra curl options, e.g. --cacert FILE).
#
# What must stay true: the disk key lives only in a shell variable and
# reaches cryptsetup on its stdin (never argv, a file, or a log line); the
# boot token reaches curl on stdin too; a denied boot powers the VM off.
# Runs under POSIX sh with curl; no set -x anywhere.
set -u
umask 077

: "${FLEET_CRYPTSETUP:=cryptsetup}"
: "${FLEET_POWEROFF:=poweroff}"
: "${FLEET_MAPPER_NAME:=fleet-data}"
: "${FLEET_CURL_OPTS:=}"
: "${FLEET_ENCRYPTED:=0}"

log() { echo "dmzfleet-agent: $*" >&2; }

# JSON string contents: ids, tokens and images are [A-Za-z0-9._:/-]; anything else is dropped.
clean() { printf '%s' "$1" | tr -cd 'A-Za-z0-9._:/@+= -'; }

# POST a JSON body read from stdin; prints the answer body; fails on a non-2xx answer.
post() {
  # shellcheck disable=SC2086
  curl -sS --fail --max-time 30 --retry 5 --retry-delay 2 --retry-connrefused $FLEET_CURL_OPTS \
    -H 'content-type: application/json' --data-binary @- "$1"
}

report() {
  state=$1
  detail=$(clean "${2:-}")
  denied=${3:-false}
  printf '{"cloudId":"%s","vmId":"%s","bootToken":"%s","state":"%s","detail":"%s","denied":%s}' \
    "$(clean "$FLEET_CLOUD_ID")" "$(clean "$FLEET_VM_ID")" "$(clean "$FLEET_BOOT_TOKEN")" "$state" "$detail" "$denied" |
    post "$FLEET_BOOT_URL/status" >/dev/null || log "could not report $state"
}

fail() {
  log "boot failed: $1"
  report failed "$1" "${2:-false}"
  "$FLEET_POWEROFF"
  exit 1
}

if [ -z "${FLEET_BOOT_TOKEN:-}" ]; then
  log "no boot token: first launch, nothing to do"
  exit 0
fi

report booting ""

answer=$(printf '{"cloudId":"%s","vmId":"%s","image":"%s","bootToken":"%s"}' \
  "$(clean "$FLEET_CLOUD_ID")" "$(clean "$FLEET_VM_ID")" "$(clean "$FLEET_IMAGE")" "$(clean "$FLEET_BOOT_TOKEN")" | post "$FLEET_BOOT_URL") ||
  fail "boot endpoint unreachable"

# The answer is { approved, reason, diskKey? } (a flat JSON object). Only the
# boot endpoint's own denial is one (the driver terminates a denied VM); an
# answer that is neither (a proxy's page, an empty body) is a failed boot.
field() { printf '%s' "$answer" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
case "$answer" in
  *'"approved":true'*) ;;
  *'"approved":false'*) fail "boot denied: $(field reason)" true ;;
  *) fail "the boot endpoint's answer is no boot answer" ;;
esac

if [ "$FLEET_ENCRYPTED" = 1 ]; then
  key=$(field diskKey)
  [ -n "$key" ] || fail "approved without a disk key"
  if ! "$FLEET_CRYPTSETUP" isLuks "$FLEET_DATA_DEVICE"; then
    # First boot: the volume is blank; format it under the released key.
    printf '%s' "$key" | "$FLEET_CRYPTSETUP" luksFormat --batch-mode --key-file=- "$FLEET_DATA_DEVICE" ||
      { key=; fail "could not format the data volume"; }
  fi
  printf '%s' "$key" | "$FLEET_CRYPTSETUP" open --type luks --key-file=- "$FLEET_DATA_DEVICE" "$FLEET_MAPPER_NAME" ||
    { key=; fail "the released key does not unlock the data volume"; }
  key=
fi

report ready ""
log "ready"
