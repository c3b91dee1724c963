#!/usr/bin/env bash
# Fill a local source mirror (a directory of <sha256> files) with the upstream tarballs of
# orch's recipe library that Debian ships byte-identical as `.orig` tarballs. For machines
# whose network reaches Debian's archive but not the upstream hosts (as this project's CI).
#
#   bash scripts/mirror-from-debian.sh DIR [RECIPE...]    (default: every recipe)
#
# The archive's address is read from this machine's own apt configuration, never written
# down. Only files whose sha256 equals a recipe's upstream sha256 are kept, so what lands in
# DIR is exactly what the recipes ask for; plus the stand-ins of recipes/stand-ins.tsv, under
# their own sha256, which no recipe pins (a test must override a recipe's source to use one).
set -euo pipefail
dest=$(realpath -m "${1:?usage: mirror-from-debian.sh DIR [RECIPE...]}")
shift
wanted=" $* "
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dest"

mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
    grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; break}}' || true
  } | grep -v security | head -n1 || true
)
[ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt configuration" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
for suite in bookworm trixie; do
  echo "deb-src [signed-by=$keyring] $mirror $suite main"
done > "$work/sources.list"
# forky (testing) too: the only suite with abseil's, c-ares' and utf8proc's upstream tarballs.
echo "deb-src [signed-by=$keyring] $mirror forky main" >> "$work/sources.list"
cat > "$work/apt.conf" <<CONF
Dir::Etc::SourceList "$work/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$work/lists";
Dir::Cache "$work/cache";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$work/apt.conf"
apt-get update -q >/dev/null

# recipe -> Debian source package
declare -A srcpkg=(
  [bzip2]=bzip2 [lz4]=lz4 [snappy]=snappy [xz]=xz-utils [brotli]=brotli [libyaml]=libyaml
  [libffi]=libffi [libjpeg-turbo]=libjpeg-turbo [openssl]=openssl [zlib]=zlib [zstd]=libzstd
  [libxml2]=libxml2 [libxslt]=libxslt [libpng]=libpng1.6
)
# imaging libraries whose Debian .orig is the upstream tarball (freetype and openjpeg2
# are repacked: see recipes/README.md)
srcpkg+=([libtiff]=tiff [libwebp]=libwebp [lcms2]=lcms2)
cd "$work/dl"
for recipe in "${!srcpkg[@]}"; do
  [ "$wanted" = "  " ] || [[ "$wanted" == *" $recipe "* ]] || continue
  for suite in bookworm trixie; do
    apt-get source -q --download-only "${srcpkg[$recipe]}/$suite" >/dev/null 2>&1 || true
  done
done

# C++ libraries: recipe -> source package/suite whose .orig is the recipe's upstream tarball.
declare -A cxx_srcpkg=(
  [abseil-cpp]=abseil/forky [protobuf]=protobuf/trixie [re2]=re2/trixie
  [utf8proc]=utf8proc/forky [thrift]=thrift/trixie [gflags]=gflags/trixie
  [c-ares]=c-ares/forky
)
for recipe in "${!cxx_srcpkg[@]}"; do
  [ "$wanted" = "  " ] || [[ "$wanted" == *" $recipe "* ]] || continue
  apt-get source -q --download-only "${cxx_srcpkg[$recipe]}" >/dev/null 2>&1 || true
done

kept=0
for yaml in "$here"/recipes/*.yaml; do
  want=$(sed -n 's/^ *sha256: *"\{0,1\}\([0-9a-f]\{64\}\)"\{0,1\}.*/\1/p' "$yaml" | head -n1)
  name=$(basename "$yaml" .yaml)
  [ "$wanted" = "  " ] || [[ "$wanted" == *" $name "* ]] || continue
  [ -f "$dest/$want" ] && { echo "mirror: $name already present"; kept=$((kept + 1)); continue; }
  for f in "$work"/dl/*.orig.tar.*; do
    [ -f "$f" ] || continue
    if [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$want" ]; then
      cp "$f" "$dest/$want.tmp" && mv "$dest/$want.tmp" "$dest/$want"
      echo "mirror: $name <- $(basename "$f")"
      kept=$((kept + 1))
      break
    fi
  done
done
echo "mirror: $kept recipe source(s) in $dest"

# Stand-ins (recipes/stand-ins.tsv): Debian .orig tarballs that differ from the upstream
# tarball a recipe pins (repacked, recompressed, or an older release). Kept under their own
# sha256, which no recipe pins: only a build that overrides a recipe's source uses one.
standins=0
while IFS=$'\t' read -r name src _version want file _patch; do
  case "$name" in '' | '#'*) continue ;; esac
  [ "$wanted" = "  " ] || [[ "$wanted" == *" $name "* ]] || continue
  [ -f "$dest/$want" ] || {
    [ -f "$work/dl/$file" ] || (cd "$work/dl" && apt-get source -q --download-only "$src" >/dev/null 2>&1) || true
    f="$work/dl/$file"
    if [ ! -f "$f" ] || [ "$(sha256sum "$f" | cut -d' ' -f1)" != "$want" ]; then
      echo "mirror: $name stand-in $file not found in $src" >&2
      continue
    fi
    cp "$f" "$dest/$want.tmp" && mv "$dest/$want.tmp" "$dest/$want"
  }
  echo "mirror: $name stand-in (not upstream) <- $file"
  standins=$((standins + 1))
done < "$here/recipes/stand-ins.tsv"
echo "mirror: $standins stand-in source(s) in $dest"
