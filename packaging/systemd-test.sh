#!/bin/sh
# systemd-test.sh DEB_DIR PKG_VERSION VERSION: installs the amd64 packages in
# a container booted with systemd (systemd-nspawn over a throw-away overlay of
# this machine's root, private network) and checks what only a real systemd
# shows: the hardened unit starts firewatch as its user without capabilities,
# /healthz says the stamped version, SIGTERM stops it cleanly, a kill -9 is
# restarted, an upgrade restarts it, purge leaves nothing running; firegate is
# enabled but not started. The machine itself is not changed (the overlay and
# the mounts are removed at the end). Needs root, systemd-nspawn (Debian:
# systemd-container) and overlayfs; `make package-test` runs it when they
# are there and says so when not.
set -eu
dist=$1 pkgver=$2 ver=$3
fw=$dist/firewatch_${pkgver}_amd64.deb
fg=$dist/firegate_${pkgver}_amd64.deb
tmp=$(mktemp -d /var/tmp/firewatch-systemd-test.XXXXXX)
mounted_run=
cleanup() {
	umount "$tmp/merged" 2>/dev/null || true
	if [ -n "$mounted_run" ]; then umount /run/systemd/nspawn 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/upper" "$tmp/work" "$tmp/merged" "$tmp/seed" "$tmp/out"
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$tmp/merged"
# nspawn keeps propagation mounts under /run/systemd/nspawn, which must be a tmpfs.
mkdir -p /run/systemd/nspawn
if [ "$(stat -f -c %T /run/systemd/nspawn)" != tmpfs ]; then
	mount -t tmpfs tmpfs /run/systemd/nspawn
	mounted_run=1
fi
systemd-id128 new >"$tmp/merged/etc/machine-id"
cp "$fw" "$tmp/seed/firewatch.deb"
cp "$fg" "$tmp/seed/firegate.deb"
cat >"$tmp/merged/etc/systemd/system/firewatch-package-test.service" <<EOT
[Unit]
Description=firewatch package test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/seed/run.sh
ExecStopPost=/bin/systemctl poweroff
EOT
cat >"$tmp/seed/run.sh" <<'EOT'
#!/bin/sh
exec >/out/log 2>&1
fail() { echo "FAIL: $*"; journalctl --no-pager -u firewatch | tail -30; exit 1; }
# Services of the machine the overlay copies would hold the ports.
systemctl stop mosquitto.service postgresql.service influxdb.service 2>/dev/null || true
dpkg -i /seed/firewatch.deb || fail "dpkg -i firewatch"
for i in $(seq 1 30); do curl -sf http://127.0.0.1:9090/healthz >/out/healthz && break; sleep 1; done
grep -q "\"version\":\"$VERSION\"" /out/healthz || fail "healthz: $(cat /out/healthz 2>/dev/null)"
pid=$(systemctl show -p MainPID --value firewatch)
[ "$(stat -c %U /proc/$pid)" = firewatch ] || fail "not running as firewatch"
grep -q '^CapEff:	0000000000000000' /proc/$pid/status || fail "has capabilities"
grep -q '^NoNewPrivs:	1' /proc/$pid/status || fail "NoNewPrivs not set"
grep -q '^Seccomp:	2' /proc/$pid/status || fail "no seccomp filter"
[ "$(systemctl show -p LimitNOFILE --value firewatch)" = 262144 ] || fail "LimitNOFILE"
echo "running as firewatch, no capabilities, NoNewPrivs, seccomp, LimitNOFILE 262144, healthz $(cat /out/healthz)"
systemctl stop firewatch
[ "$(systemctl show -p Result --value firewatch)" = success ] || fail "SIGTERM did not stop it cleanly"
journalctl --no-pager -u firewatch | grep -q 'msg=stopped' || fail "no clean shutdown in the journal"
systemctl start firewatch
for i in $(seq 1 30); do curl -sf http://127.0.0.1:9090/healthz >/dev/null && break; sleep 1; done
kill -9 "$(systemctl show -p MainPID --value firewatch)"
for i in $(seq 1 30); do
	[ "$(systemctl show -p NRestarts --value firewatch)" -ge 1 ] && curl -sf http://127.0.0.1:9090/healthz >/dev/null && break
	sleep 1
done
[ "$(systemctl show -p NRestarts --value firewatch)" -ge 1 ] || fail "not restarted after kill -9"
echo "stopped cleanly by SIGTERM; restarted after kill -9"
before=$(systemctl show -p MainPID --value firewatch)
dpkg -i /seed/firewatch.deb || fail "reinstall (upgrade path)"
for i in $(seq 1 30); do curl -sf http://127.0.0.1:9090/healthz >/dev/null && break; sleep 1; done
after=$(systemctl show -p MainPID --value firewatch)
[ "$before" != "$after" ] && [ "$(systemctl is-active firewatch)" = active ] || fail "upgrade did not restart firewatch"
echo "upgrade restarted it (pid $before -> $after)"
dpkg -i /seed/firegate.deb || fail "dpkg -i firegate"
[ "$(systemctl is-enabled firegate)" = enabled ] && [ "$(systemctl is-active firegate)" = inactive ] || fail "firegate: want enabled, not started"
echo "firegate enabled, not started"
dpkg --purge firewatch firegate || fail "purge"
sleep 1
[ -z "$(pgrep -u firewatch)" ] || fail "firewatch processes left after purge"
echo PASS
EOT
chmod 0755 "$tmp/seed/run.sh"
sed -i "2i VERSION='$ver'" "$tmp/seed/run.sh"
timeout 300 systemd-nspawn -q -D "$tmp/merged" --register=no --keep-unit --private-network -M firewatch-test \
	--bind-ro="$tmp/seed:/seed" --bind="$tmp/out:/out" -b systemd.wants=firewatch-package-test.service >"$tmp/console" 2>&1 || true
if [ ! -s "$tmp/out/log" ]; then
	# No container (no overlayfs, no nspawn privileges): a limit of this
	# machine, not a failure of the package, unless REQUIRE_SYSTEMD=1.
	echo "systemd-test: the container did not boot here; the unit was not run under systemd:"
	tail -20 "$tmp/console"
	[ -z "${REQUIRE_SYSTEMD:-}" ] && exit 0 || exit 1
fi
cat "$tmp/out/log"
grep -q '^PASS$' "$tmp/out/log"
