#!/bin/sh
# version.sh [deb] [REV] prints the version of this tree (or of commit REV),
# as stamped into the binaries: the release tag (v1.2.0), `git describe`
# between tags (v1.2.0-3-gabc1234), or v0.0.0-<commits>-g<hash> before the
# first tag; "-dirty" when the tree has uncommitted changes. With "deb": the
# Debian package version made from it, which sorts the same way under dpkg:
#   v1.2.0 -> 1.2.0,  v1.2.0-3-gabc1234 -> 1.2.0+3.gabc1234,  v0.0.0-45-g1443a36-dirty -> 0.0.0+45.g1443a36.dirty
# Release tags are vMAJOR.MINOR.PATCH (docs/install.md, "Releasing").
set -eu
cd "$(dirname "$0")/.."
mode=tag
if [ "${1:-}" = deb ] || [ "${1:-}" = tag ]; then
	mode=$1
	shift
fi
rev=${1:-}
if [ -n "$rev" ]; then
	v=$(git describe --tags --match 'v[0-9]*' "$rev" 2>/dev/null) ||
		v=$(n=$(git rev-list --count "$rev") && h=$(git rev-parse --short=7 "$rev") && echo "v0.0.0-$n-g$h")
else
	v=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) ||
		v=$(n=$(git rev-list --count HEAD 2>/dev/null) && h=$(git rev-parse --short=7 HEAD) &&
			d=$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty) && echo "v0.0.0-$n-g$h$d") ||
		v=v0.0.0-unknown
fi
case $mode in
deb) echo "$v" | sed -e 's/^v//' -e 's/-/+/' -e 's/-/./g' ;;
*) echo "$v" ;;
esac
