#!/usr/bin/env bash
# Install Orthanc (a real, lightweight PACS) and its DICOMweb plugin for the hospital tests
# (tests/engine/hospital: the fixture starts its own Orthanc on free loopback ports with a
# temporary storage and configuration; the packaged service is never started).
# Debian/Ubuntu with apt; best effort elsewhere: the tests then skip, or fail where CI sets
# OCTGUIDE_REQUIRE_ORTHANC=1. dciodvfy (dicom3tools) is installed by .ci/run.
# The fixture builds tests/engine/hospital/loopback_bind.c (Orthanc 1.10 cannot be told to listen
# on loopback only), so a C compiler is part of what this installs.
set -euo pipefail
if command -v cc >/dev/null 2>&1 \
   && { command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; }; then
  if ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 \
     || ls /usr/lib/orthanc/libOrthancDicomWeb.so* >/dev/null 2>&1; then
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-orthanc: no apt-get here; the Orthanc tests will skip" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-orthanc: not root and no sudo; the Orthanc tests will skip" >&2; exit 0; fi
fi
# The package's post-install tries to start the service; a container without an init system
# refuses (policy-rc.d), which is fine: the tests run their own Orthanc.
($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends orthanc orthanc-dicomweb gcc libc6-dev) >/dev/null 2>&1 \
  || echo "install-orthanc: orthanc could not be installed; the Orthanc tests will skip" >&2
# Stop the packaged service if an init system did start it: the tests need none on 4242/8042.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  $sudo systemctl stop orthanc || true
fi
