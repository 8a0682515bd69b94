#!/usr/bin/env bash
# Fails if any C++ file differs from what the repo's .clang-format produces.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find include src apps tests bench fuzz -name '*.cpp' -o -name '*.hpp' 2>/dev/null | sort)
clang-format --dry-run --Werror "${files[@]}"
echo "format: ${#files[@]} files clean"
