# The two entry points of the README. Both run scripts/setup first, which installs nothing when up to date.
.PHONY: setup grade-examples test benchmark

setup:
	./scripts/setup

grade-examples: setup
	.venv/bin/grade examples/submissions --out reports --cell-timeout 120

test: setup
	.venv/bin/python -m pytest -q

# Documented in benchmarks/README.md; takes about 25 minutes on 2 cores.
benchmark: setup
	.venv/bin/python -m pip --disable-pip-version-check -q install -e ".[benchmark]"
	.venv/bin/python benchmarks/run.py
