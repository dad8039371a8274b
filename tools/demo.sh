#!/bin/sh
# make demo: runs layersplit on the bundled sample image (docker <= 24 layout,
# one layer stored twice as a symlink) and shows what it wrote.
set -e
out=build/demo-out
rm -rf "$out"
echo "\$ build/layersplit tests/data/sample.tar $out"
build/layersplit tests/data/sample.tar "$out"
echo
echo "\$ ls -l $out"
ls -l "$out"
echo
echo "\$ cat $out/manifest.json"
cat "$out/manifest.json"; echo
echo
echo "\$ cat $out/digests.json"
cat "$out/digests.json"; echo
