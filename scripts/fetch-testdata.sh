#!/usr/bin/env bash
# Real recorded speech for the tests and the demo: Debian's pocketsphinx-testdata
# (LibriVox "Sense and Sensibility" clips, spoken card names; BSD-2, recordings public domain).
# Unpacked into .testdata/pocketsphinx without touching the system; idempotent.
set -euo pipefail
dest="${1:-.testdata}"
data="$dest/pocketsphinx"
[ -f "$data/librivox/transcription" ] && exit 0
if [ -f /usr/share/pocketsphinx/test/data/librivox/transcription ]; then
  mkdir -p "$dest" && ln -sfn /usr/share/pocketsphinx/test/data "$data" && exit 0
fi
command -v apt-get >/dev/null || {
  echo "error: apt-get not found: install Debian's pocketsphinx-testdata by hand and set" \
       "SPEECHKIT_TESTDATA to its test/data folder" >&2; exit 1; }
mkdir -p "$dest/debs"
( cd "$dest/debs" && { apt-get download pocketsphinx-testdata >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 || true; apt-get download pocketsphinx-testdata >/dev/null; }; } )
rm -rf "$dest/unpacked" && dpkg-deb -x "$dest"/debs/pocketsphinx-testdata_*.deb "$dest/unpacked"
ln -sfn unpacked/usr/share/pocketsphinx/test/data "$data"
echo "test data ready in $data"
