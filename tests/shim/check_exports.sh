#!/usr/bin/env bash
# Checks libslicer.so's dynamic symbols: (1) no glibc symbol version newer than MAX (the oldest
# glibc user images may have), (2) exactly the symbols of the generated version script exported.
# Usage: check_exports.sh OBJDUMP LIB MAP MAX
set -euo pipefail
objdump=$1 lib=$2 map=$3 max=$4
table=$("$objdump" -T "$lib")
newest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$table" | sed 's/GLIBC_//' | sort -V | tail -1)
if [[ "$(printf '%s\n%s\n' "$newest" "$max" | sort -V | tail -1)" != "$max" ]]; then
  echo "FAIL: imports GLIBC_$newest, newer than GLIBC_$max:"
  grep "GLIBC_$newest" <<<"$table"
  exit 1
fi
echo "ok: newest glibc version imported is GLIBC_$newest (limit GLIBC_$max)"
exported=$(awk '$2 == "g" && $4 != "*UND*" {print $NF}' <<<"$table" | sort)
wanted=$(tr ' ;{}' '\n\n\n\n' <"$map" | grep -E '^(cu|nvml|dlsym)' | sort)
if [[ "$exported" != "$wanted" ]]; then
  echo "FAIL: exported symbols differ from the version script:"
  diff <(echo "$wanted") <(echo "$exported") || true
  exit 1
fi
echo "ok: exports exactly the $(wc -l <<<"$wanted") symbols of the hook table"
