#!/usr/bin/env bash
# Install the prebuilt OHIF viewer (npm @ohif/app, exact version and sha512 pinned in package.json "ohif") into
# viewer_plugin/ohif/dist. Why not `npm install @ohif/app`: its dependency tree does not resolve
# (@ohif/i18n@3.13.2 is not published) and we only need the built dist/, so we fetch the one tarball with
# `npm pack` and check its integrity ourselves. Safe to run again: skips when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")"
read -r pkg version integrity < <(node -e 'const o=require("./package.json").ohif;console.log(o.package,o.version,o.integrity)')
if [ -f ohif/VERSION ] && [ "$(cat ohif/VERSION)" = "$pkg@$version" ] && [ -f ohif/dist/index.html ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tgz=$(cd "$tmp" && npm pack "$pkg@$version" --silent --loglevel=error)
actual=$(node -e 'const c=require("crypto");process.stdout.write("sha512-"+c.createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tmp/$tgz")
if [ "$actual" != "$integrity" ]; then
  echo "install-ohif: $pkg@$version tarball integrity $actual does not match the pinned $integrity" >&2
  exit 1
fi
tar -xzf "$tmp/$tgz" -C "$tmp"
rm -rf ohif && mkdir ohif
mv "$tmp/package/dist" ohif/dist
echo "$pkg@$version" > ohif/VERSION
