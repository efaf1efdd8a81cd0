.PHONY: setup setup310 demo test test310 lint

setup:
	@scripts/setup.sh

# .venv310 on Python 3.10 (JetPack 6's), without the train extra.
setup310:
	@scripts/setup.sh --python310

demo: setup
	@scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q

# The fast part of the suite on Python 3.10; the tests that train skip (no torch).
test310: setup310
	.venv310/bin/python -m pytest -q -m "not slow" -p no:cacheprovider

lint: setup
	.venv/bin/ruff check edge_msa tests scripts
