#!/usr/bin/env bash
# Rewrites constraints.txt from the project venv, after a dependency change was tested there:
#   bash scripts/freeze_constraints.sh
# Local version labels are dropped (torch==2.13.0 matches this machine's 2.13.0+cpu build and
# PyPI's alike); promptlab itself is not pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "# The versions the tests passed with: scripts/setup.sh installs .venv under these"
    echo "# constraints, so a fresh set-up resolves the same versions every time."
    echo "# Refresh after changing a dependency: bash scripts/freeze_constraints.sh"
    .venv/bin/pip freeze --exclude-editable --disable-pip-version-check \
        | grep -v -i -E '^(promptlab)([=@ ]|$)' \
        | sed -E 's/\+[[:alnum:].]+$//'
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pinned distributions"
