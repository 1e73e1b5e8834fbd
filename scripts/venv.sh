# Sourced by scripts/serve and scripts/test: make .venv and install the project once.
# With INSTALL_EXTRAS=test (scripts/test) the test tools too; scripts/serve
# installs what the service needs only.
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
version=$(sha1sum <pyproject.toml | cut -c1-12)
stamp=.venv/.installed-$version${INSTALL_EXTRAS:+-$INSTALL_EXTRAS}
# The test tools' install holds the service's too.
if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-$version-test" ]; then
    touch .venv/.installing
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${INSTALL_EXTRAS:+[$INSTALL_EXTRAS]}"
    find .venv -maxdepth 1 -name ".installed-*" ! -name ".installed-$version*" -delete
    touch "$stamp"
    rm .venv/.installing
fi
