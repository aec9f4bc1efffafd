#!/usr/bin/env bash
# Compiler wrapper used only while building mmcv 2.1.0 (see tools/install/install.sh).
#
# Why: torch >= 2.10 headers refuse anything older than C++20 ("#error C++20 or later
# compatible compiler is required to use ATen"), but mmcv 2.1.0's setup.py passes
# -std=c++17 (or c++14) for every torch newer than 1.12. torch's cpp_extension honours
# $CXX, so pointing CXX here upgrades the flag without patching mmcv's sources.
# All of mmcv's CPU ops compile unchanged as C++20.
args=()
for a in "$@"; do
  case "$a" in
    -std=c++14|-std=c++17|-std=gnu++14|-std=gnu++17) args+=("-std=c++20") ;;
    *) args+=("$a") ;;
  esac
done
exec "${ORL_REAL_CXX:-g++}" "${args[@]}"
