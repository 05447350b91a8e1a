#!/bin/sh
# A fresh pre-shared key for the lab's two gateways, private to root (the
# gateway refuses a key file that group or others can read). Kept while the
# volume lives, so restarted gateways still agree.
set -eu
umask 077
if [ ! -s /psk/psk ]; then
    printf '0x%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/psk/psk.new
    mv /psk/psk.new /psk/psk
fi
chmod 0600 /psk/psk
