// The custom data of every Azure fleet VM: a bootstrap cloud-init runs once,
// at the VM's first start. Azure's custom data cannot change after the
// create, and each boot has its own one-time token, so the bootstrap installs
// a service that watches the VM's userData (which the driver's `boot` sets
// to the boot agent with that boot's token, providers/boot-agent) through
// the instance metadata service and runs each new agent script once:
//
//   create  -> custom data = this bootstrap (no token, no key)
//   boot    -> PATCH userData = agent.sh with FLEET_BOOT_TOKEN of this boot
//   the VM  -> IMDS compute/userData -> new script? run it (sh, on stdin)
//
// What must stay true: the script reaches sh on stdin, never a file (it
// holds the boot token); only its sha256 is kept (/var/lib/dmzfleet, 0700),
// so a script already run (the token of an earlier boot, still in userData
// after a restart) never runs again. Overridable for the test:
// FLEET_IMDS_URL, FLEET_STATE_DIR, FLEET_POLL_SECONDS, FLEET_ONCE.

/** The watcher, installed as /usr/local/lib/dmzfleet/azure-boot.sh. */
export const WATCHER = `#!/bin/sh
# dmzfleet: runs each new boot agent script the driver puts in this VM's userData, once.
set -u
umask 077
: "\${FLEET_IMDS_URL:=http://169.254.169.254/metadata/instance/compute/userData?api-version=2021-01-01&format=text}"
: "\${FLEET_STATE_DIR:=/var/lib/dmzfleet}"
: "\${FLEET_POLL_SECONDS:=5}"
: "\${FLEET_ONCE:=0}"
mkdir -p "$FLEET_STATE_DIR"
while :; do
  encoded=$(curl -sS --fail --max-time 10 --noproxy '*' -H 'Metadata: true' "$FLEET_IMDS_URL" 2>/dev/null || true)
  if [ -n "$encoded" ]; then
    sum=$(printf '%s' "$encoded" | sha256sum | cut -d' ' -f1)
    if [ "$sum" != "$(cat "$FLEET_STATE_DIR/last-boot" 2>/dev/null || true)" ]; then
      # Noted before it runs: a script runs at most once, even if the VM stops halfway.
      printf '%s\\n' "$sum" > "$FLEET_STATE_DIR/last-boot"
      printf '%s' "$encoded" | base64 -d | sh
    fi
  fi
  [ "$FLEET_ONCE" = 1 ] && exit 0
  sleep "$FLEET_POLL_SECONDS"
done
`;

/** The custom data: installs the watcher as a systemd service and starts it. */
export function azureBootstrap(): string {
  return `#!/bin/sh
# dmzfleet bootstrap (providers/drivers/azure/bootstrap.ts): run once by cloud-init.
set -eu
umask 077
mkdir -p /usr/local/lib/dmzfleet /var/lib/dmzfleet
cat > /usr/local/lib/dmzfleet/azure-boot.sh <<'FLEET_WATCHER'
${WATCHER}FLEET_WATCHER
chmod 0700 /usr/local/lib/dmzfleet/azure-boot.sh
cat > /etc/systemd/system/dmzfleet-boot.service <<'FLEET_UNIT'
[Unit]
Description=dmzfleet boot agent runner (runs each boot's agent from userData once)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/lib/dmzfleet/azure-boot.sh
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
FLEET_UNIT
systemctl daemon-reload
systemctl enable --now dmzfleet-boot.service
`;
}
