# Sourced by scripts/serve and scripts/test: make .venv and install the project once.
#
# Safe to interrupt (Ctrl-C, a closed terminal): a venv counts as made only
# once .venv/.made is written, after `python -m venv` (pip included) has
# finished, and an install only once its stamp is written, after pip has
# finished. A venv without .made, or one whose last install never finished
# (.venv/.installing still there), is removed and made again. (A venv made
# before .made existed has an install stamp: it is complete.)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ -d .venv ] && { [ -f .venv/.installing ] ||
    { [ ! -f .venv/.made ] && ! compgen -G ".venv/.installed-*" >/dev/null; }; }; then
    echo "making .venv again: the last attempt to make it did not finish" >&2
    rm -rf .venv
fi
if [ ! -d .venv ]; then
    echo "making .venv and installing (the first run takes a minute or two)" >&2
    "$PYTHON" -m venv .venv
    touch .venv/.made
fi
stamp=.venv/.installed-$(sha1sum <pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    touch .venv/.installing
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
    rm .venv/.installing
fi
