#!/bin/sh
# The compose `keys` job (run as root, once per `up`): copies each identity's private key
# into that identity's own volume, owned by the image's user and readable by it alone, with
# the public registry beside it. A service mounts only its identity's volume, so it holds
# no other key. Host key files stay as `trias keys init` wrote them (0600, the host user's).
#   usage: trias-install-keys <host key dir> <volume mount>...   (each mount named /id/<identity>)
set -eu
src=$1
shift
for dir in "$@"; do
  name=$(basename "$dir")
  if [ ! -f "$src/$name.key.json" ]; then
    echo "keys: no key for identity $name in the mounted key directory: run \`trias keys init .trias/keys\` on the host" >&2
    exit 1
  fi
  install -o node -g node -m 0400 "$src/$name.key.json" "$dir/$name.key.json"
  install -o node -g node -m 0444 "$src/registry.jwks.json" "$dir/registry.jwks.json"
  chown node:node "$dir" && chmod 0500 "$dir"
done
echo "keys: installed for $(for d in "$@"; do basename "$d"; done | tr '\n' ' ')"
