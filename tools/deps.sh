#!/bin/sh
# Installs the Debian packages layersplit needs to build, test and benchmark,
# when any is missing.  Runs apt-get as root (or through sudo).
set -e
PKGS="build-essential pkg-config liblua5.4-dev lua5.4 libarchive-dev zlib1g-dev
lua-cjson-dev lua-cjson libssl-dev libdeflate-dev libdeflate-tools libisal-dev isal libedit-dev python3 umoci
skopeo pigz zstd time luarocks clang libclang-rt-14-dev groff-base man-db
libcurl4-openssl-dev docker-registry apache2-utils openssl util-linux strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "make deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
