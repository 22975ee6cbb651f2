# dmzfleet boot agent: the secure-boot handshake of a real VM (docs/drivers/).
# Shipped as the VM's user data (AWS, in a cloud-init wrapper that runs it at every boot) or userData (Azure), after a header
# of settings the driver writes for each boot (renderAgentUserData, index.ts):
#   FLEET_BOOT_URL    the DMZ client's boot endpoint (POST; status at <url>/status)
#   FLEET_VM_ID       the record's VM id
#   FLEET_CLOUD_ID    the cloud's id of this VM
#   FLEET_IMAGE       the real image it booted
#   FLEET_BOOT_TOKEN  the one-time boot token of this boot (empty at first launch: then nothing happens)
#   FLEET_ENCRYPTED   1 when the data volume is LUKS-encrypted with the key the authority releases
#   FLEET_DATA_DEVICE block device of the data volume
#   FLEET_BOOT_CA     PEM CA bundle of an https boot endpoint (the DMZ client's --boot-ca); empty: the system's CAs
#   FLEET_BOOT_WINDOW seconds the whole handshake may take from the agent's start (default 480): below the
#                     DMZ client's wait for the boot (agentWindowSeconds of its readyTimeoutMs, index.ts)
# Optional, for tests and unusual images: FLEET_CRYPTSETUP (default cryptsetup),
# FLEET_POWEROFF (default `poweroff`), FLEET_MAPPER_NAME (default fleet-data),
# FLEET_MAPPER_DIR (default /dev/mapper),
# FLEET_CURL_OPTS (extra curl options, e.g. --cacert FILE), FLEET_TRIES
# (default 12) and FLEET_RETRY_SECONDS (default 5): how often, how far apart,
# a request that got no answer or a 408 / 429 / 5xx one is sent again (an
# answer's Retry-After in seconds, at most RETRY_AFTER_MAX, wins over the latter),
# within FLEET_BOOT_WINDOW: no try is sent after it (but the report of the
# failure's one), and a pause that would end past it is not waited out.
#
# In-guest reboots: AWS runs this script at every boot, so after a reboot from
# inside (shutdown -r, a kernel update) it runs again with the token of the
# last boot, used already. The record then holds the VM Running, not booting,
# so the boot endpoint denies it and the VM powers off here; no driver
# terminates it outside an apply's awaitReady, so it keeps its disk and waits
# for the next apply's approved boot (docs/recovery.md, "In-guest reboots and
# power-offs"). A VM cannot reboot itself into its disk key. On Azure the
# watcher (providers/drivers/azure/bootstrap.ts) does not run a script twice,
# so this does not run at an in-guest reboot there.
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
: "${FLEET_MAPPER_DIR:=/dev/mapper}"
: "${FLEET_CURL_OPTS:=}"
: "${FLEET_ENCRYPTED:=0}"
: "${FLEET_TRIES:=12}"
: "${FLEET_RETRY_SECONDS:=5}"
# Whole numbers only: a test against anything else would never end the retries.
case "$FLEET_TRIES" in '' | *[!0-9]*) FLEET_TRIES=12 ;; esac
case "$FLEET_RETRY_SECONDS" in '' | *[!0-9]*) FLEET_RETRY_SECONDS=5 ;; esac
# The DMZ client's awaitReady gives up on the boot after its readyTimeoutMs (10 minutes on aws and azure);
# an agent still asking then (12 tries of each of its three requests, up to a minute apart: half an hour)
# had its boot approved, or denied, after the step had failed. So the handshake ends within this window.
: "${FLEET_BOOT_WINDOW:=480}"
case "$FLEET_BOOT_WINDOW" in '' | *[!0-9]*) FLEET_BOOT_WINDOW=480 ;; esac
# The longest Retry-After waited out, in seconds: a boot endpoint's window can be an hour long
# (bootLimit.windowMs); a VM asks again at least every minute, within its FLEET_TRIES.
RETRY_AFTER_MAX=60
nl='
'

log() { echo "dmzfleet-agent: $*" >&2; }

# Seconds since the agent started (`date +%s`: GNU, busybox, BSD); 0 on an image whose date cannot say,
# where FLEET_TRIES alone bounds the retries.
started=$(date +%s 2>/dev/null)
case "$started" in '' | *[!0-9]*) started= ;; esac
elapsed() {
  t=$(date +%s 2>/dev/null)
  case "$started:$t" in :* | *: | *[!0-9:]*) echo 0 ;; *) echo $((t - started)) ;; esac
}

# A device path with its symlinks resolved (/dev/disk/by-id/... -> /dev/nvme1n1), as cryptsetup status names it.
realdev() { readlink -f "$1" 2>/dev/null || printf '%s\n' "$1"; }

# JSON string contents: ids, tokens and images are [A-Za-z0-9._:/-]; anything else is dropped.
clean() { printf '%s' "$1" | tr -cd 'A-Za-z0-9._:/@+= -'; }

# The answer's Retry-After in seconds (the last one in $headers: a proxy's or a 100 Continue's come first), at
# most RETRY_AFTER_MAX; FLEET_RETRY_SECONDS when there is none or it is no whole number (an HTTP date, a fraction).
retry_after() {
  ra=$(sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]:[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$headers" 2>/dev/null | tail -n 1)
  if [ -z "$ra" ]; then
    echo "$FLEET_RETRY_SECONDS"
    return
  fi
  # Leading zeros off (007 is 7, not octal), then at most RETRY_AFTER_MAX; five digits or more are over it
  # before test compares them (its integers overflow).
  ra=${ra#"${ra%%[!0]*}"}
  case "$ra" in '') ra=0 ;; ?????*) ra=$RETRY_AFTER_MAX ;; esac
  [ "$ra" -gt "$RETRY_AFTER_MAX" ] && ra=$RETRY_AFTER_MAX
  echo "$ra"
}

# POST a JSON body read from stdin; prints the answer body; fails on an answer
# other than 2xx. No answer at all (refused, reset, cut short, timed out) and a
# 408 / 429 / 5xx are asked again, FLEET_TRIES times in all, after the answer's
# Retry-After (the boot endpoint's limit says when its window ends) or
# FLEET_RETRY_SECONDS: the boot endpoint answers a repeat of an approved boot
# with the same approval (docs/recovery.md, "Resumed boots"), so an answer lost
# on its way costs a retry, not the VM. A redirect is not followed (its answer fails).
post() {
  body=$(cat)
  tries=1
  while :; do
    # A try that gets no answer leaves no headers: no Retry-After of an earlier answer is read again.
    [ "$headers" = /dev/null ] || : >"$headers"
    # At most 30 s, and no later than the window's end (5 s at least: the report of a failure once it is spent).
    left=$((FLEET_BOOT_WINDOW - $(elapsed)))
    maxtime=30
    [ "$left" -lt "$maxtime" ] && maxtime=$left
    [ "$maxtime" -lt 5 ] && maxtime=5
    # shellcheck disable=SC2086
    out=$(printf '%s' "$body" | curl -sS --max-time "$maxtime" $FLEET_CURL_OPTS -H 'content-type: application/json' \
      -D "$headers" --data-binary @- -w "$nl%{http_code}" "$1")
    rc=$?
    code=${out##*"$nl"}
    # curl's own failures: no answer (name, connect, TLS handshake, timeout, empty / reset / cut reply) is
    # asked again; any other (a certificate that does not verify, a bad option) is final.
    case "$rc" in
      0) ;;
      6 | 7 | 18 | 28 | 35 | 52 | 55 | 56) code=000 ;;
      *) out=; body=; log "$1: curl failed (exit $rc)"; return 1 ;;
    esac
    case "$code" in
      2??) printf '%s' "${out%"$nl"*}"; out=; body=; return 0 ;;
      000 | 408 | 429 | 5??) ;;
      *) out=; body=; log "$1 answered HTTP $code"; return 1 ;;
    esac
    if [ "$tries" -ge "$FLEET_TRIES" ]; then
      out=; body=; log "$1: no answer after $tries tries (last: HTTP $code)"; return 1
    fi
    pause=$(retry_after)
    if [ "$code" = 000 ]; then what="no answer"; else what="HTTP $code"; fi
    left=$((FLEET_BOOT_WINDOW - $(elapsed)))
    if [ "$pause" -ge "$left" ]; then
      [ "$left" -lt 0 ] && left=0
      out=; body=; log "$1: $what after $tries tries; the boot window (FLEET_BOOT_WINDOW, $FLEET_BOOT_WINDOW s) has $left s left, too few to ask again in $pause s"; return 1
    fi
    tries=$((tries + 1))
    log "$1: $what; asking again in $pause s (try $tries of $FLEET_TRIES)"
    sleep "$pause"
  done
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

# Scratch files (the boot endpoint's CA, the last answer's headers; no secret), removed on exit.
# Without a temporary directory the headers go to /dev/null: no Retry-After is read.
tmp=$(mktemp -d 2>/dev/null) || tmp=
if [ -n "$tmp" ]; then
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 1' HUP INT TERM
  headers=$tmp/headers
else
  headers=/dev/null
fi

# The boot endpoint's CA (public, no secret) in a file for curl --cacert.
if [ -n "${FLEET_BOOT_CA:-}" ]; then
  ca_file=$tmp/ca.pem
  [ -n "$tmp" ] && printf '%s\n' "$FLEET_BOOT_CA" >"$ca_file" || fail "cannot write the boot endpoint's CA"
  FLEET_CURL_OPTS="$FLEET_CURL_OPTS --cacert $ca_file"
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
  if [ -e "$FLEET_MAPPER_DIR/$FLEET_MAPPER_NAME" ]; then
    # Open already (the agent run again, or a restart that kept the mapping): a second open of the
    # name would fail. It counts as open when it maps this data volume and the released key unlocks
    # the volume (checked without opening, --test-passphrase); a mapping of another device fails the boot.
    held=$("$FLEET_CRYPTSETUP" status "$FLEET_MAPPER_NAME" 2>/dev/null | sed -n 's/^ *device: *//p')
    if [ -z "$held" ] || [ "$(realdev "$held")" != "$(realdev "$FLEET_DATA_DEVICE")" ]; then
      key=
      fail "$FLEET_MAPPER_DIR/$FLEET_MAPPER_NAME is open on ${held:-a device cryptsetup status does not name}, not on the data volume $FLEET_DATA_DEVICE"
    fi
    printf '%s' "$key" | "$FLEET_CRYPTSETUP" open --test-passphrase --type luks --key-file=- "$FLEET_DATA_DEVICE" ||
      { key=; fail "the released key does not unlock the data volume (open already as $FLEET_MAPPER_NAME)"; }
    key=
    report ready ""
    log "ready (data volume open already)"
    exit 0
  fi
  # isLuks: 0 LUKS, 1 not LUKS; anything else (no such device, busy, no
  # permission) says nothing, and formatting then could overwrite a LUKS
  # volume with a new volume key: its data would be gone.
  "$FLEET_CRYPTSETUP" isLuks "$FLEET_DATA_DEVICE"
  luks=$?
  if [ "$luks" = 1 ]; then
    # First boot: the volume is blank; format it under the released key.
    printf '%s' "$key" | "$FLEET_CRYPTSETUP" luksFormat --batch-mode --key-file=- "$FLEET_DATA_DEVICE" ||
      { key=; fail "could not format the data volume"; }
  elif [ "$luks" != 0 ]; then
    key=
    fail "cannot tell whether the data volume $FLEET_DATA_DEVICE is LUKS (cryptsetup isLuks exit $luks)"
  fi
  printf '%s' "$key" | "$FLEET_CRYPTSETUP" open --type luks --key-file=- "$FLEET_DATA_DEVICE" "$FLEET_MAPPER_NAME" ||
    { key=; fail "the released key does not unlock the data volume"; }
  key=
fi

report ready ""
log "ready"
