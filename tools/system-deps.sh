#!/usr/bin/env bash
# Placeholder: installs the Debian packages the end-to-end tests need (owned by the e2e work).
exit 0
