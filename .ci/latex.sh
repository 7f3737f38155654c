#!/usr/bin/env bash
# pdflatex with booktabs and siunitx for the LaTeX table test (tests/test_tables_latex.py compiles every table
# variant into a two-column article and fails on an overfull box; it skips with a reason without them).
# Debian: booktabs is in texlive-latex-recommended, siunitx in texlive-science, Latin Modern in lmodern.
set -euo pipefail

if command -v pdflatex >/dev/null 2>&1 && kpsewhich siunitx.sty >/dev/null 2>&1 \
   && kpsewhich booktabs.sty >/dev/null 2>&1 && kpsewhich lmodern.sty >/dev/null 2>&1; then
  echo "pdflatex with booktabs and siunitx already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "latex.sh: not root and no sudo; install texlive-latex-recommended texlive-latex-extra texlive-science lmodern" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended \
  texlive-latex-extra texlive-science texlive-fonts-recommended lmodern >/dev/null
echo "pdflatex installed: $(command -v pdflatex)"
