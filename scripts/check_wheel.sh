#!/usr/bin/env bash
# CI's packaging check: build the sdist and, from it, the wheel; install the wheel into a fresh venv
# outside the checkout (torch first: $MNISTLAB_TORCH, default torch==2.13.0; then the wheel, no extras),
# and run what a user runs first, from a temporary folder:
#   mnistlab --version; mnistlab train --subset 2000 --epochs 1; python -c "import mnistlab"
# plus: the wheel ships py.typed and LICENSE, the sdist its tests' conftest.py, and a missing extra is one
# line (sweep without optuna). Needs .venv with the test extra (bash scripts/setup.sh test: `build`).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mnistlab-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
say() { echo "check_wheel: $*"; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

.venv/bin/python -m build --outdir "$tmp/dist" . > "$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; fail "build"; }
sdist=$(ls "$tmp"/dist/mnistlab-*.tar.gz) && wheel=$(ls "$tmp"/dist/mnistlab-*.whl)
say "built $(basename "$sdist") and $(basename "$wheel") (from the sdist) in $((SECONDS - start)) s"
listing=$(.venv/bin/python -m zipfile -l "$wheel")
for f in mnistlab/py.typed mnistlab/cli.py dist-info/licenses/LICENSE; do
  grep -q "$f" <<< "$listing" || fail "the wheel lacks $f"
done
grep -q "/tests/conftest.py$" <<< "$(tar tzf "$sdist")" || fail "the sdist lacks tests/conftest.py"

python3 -m venv "$tmp/venv"
pip_quiet() { "$tmp/venv/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
pip_quiet install --quiet --no-compile "${MNISTLAB_TORCH:-torch==2.13.0}"  # no .pyc: faster, same check
pip_quiet install --quiet --no-compile "$wheel"
say "installed torch and the wheel into a fresh venv in $((SECONDS - start)) s"

mkdir "$tmp/work" && cd "$tmp/work"  # nothing of the checkout on sys.path
export PATH="$tmp/venv/bin:$PATH"
version=$(mnistlab --version) || fail "mnistlab --version"
say "$version"
where=$(python -c "import mnistlab; print(mnistlab.__file__)") || fail "import mnistlab"
case "$where" in "$tmp/venv/"*) ;; *) fail "import mnistlab found $where, not the installed wheel" ;; esac
case "$where" in "$checkout"*) fail "import mnistlab found the checkout" ;; esac
mnistlab train --subset 2000 --epochs 1 --no-progress > train.log 2>&1 || { tail -20 train.log; fail "mnistlab train"; }
run=$(tail -1 train.log)
[ -f "$run/test.json" ] || fail "train wrote no test.json in $run"
grep -q "pip install 'mnistlab\[tensorboard\]'" train.log || fail "train without tensorboard did not say so"
set +e
err=$(mnistlab sweep --study s --trials 1 --param lr=0.01,0.1 2>&1 >/dev/null); code=$?
set -e
[ "$code" = 2 ] && [ "$err" = "mnistlab: error: mnistlab sweep needs optuna: pip install 'mnistlab[sweep]'" ] \
  || fail "sweep without optuna: exit $code, $err"
say "ok in $((SECONDS - start)) s: --version, import mnistlab, train (no extras), sweep's one line for its extra"
