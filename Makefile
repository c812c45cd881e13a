# The two entry points of the README. Both run scripts/setup first, which installs nothing when up to date.
.PHONY: setup grade-examples test

setup:
	./scripts/setup

grade-examples: setup
	.venv/bin/grade examples/submissions --out reports --cell-timeout 120

test: setup
	.venv/bin/python -m pytest -q
