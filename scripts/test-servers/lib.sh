# Shared by the test-server scripts (sourced, not run).

# apt_install NAME PACKAGE...: installs Debian packages for server NAME without letting their
# postinst start a system service (sshd on 22, vsftpd on 21, a PostgreSQL cluster on 5432):
# /usr/sbin/policy-rc.d exits 101 while apt runs, and is removed afterwards if it was ours.
apt_install() {
  local name="$1"
  shift
  echo "$name: installing $* with apt" >&2
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  if [ "$policy_added" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
