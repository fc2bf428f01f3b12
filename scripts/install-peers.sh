#!/bin/sh
# Installs the Debian packages diskpipe's tests use as peers (qemu-img, nbdkit, nbdinfo, ...).
set -e
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y qemu-utils qemu-block-extra nbdkit libnbd-bin xfsprogs xz-utils zstd bzip2 gdisk dosfstools e2fsprogs openssl
