.PHONY: check test lint format bench

check: lint test

lint:
	.venv/bin/ruff format --check kiosk tests bench
	.venv/bin/ruff check kiosk tests bench
	.venv/bin/mypy kiosk

format:
	.venv/bin/ruff format kiosk tests bench
	.venv/bin/ruff check --fix kiosk tests bench

test:
	scripts/test

bench:
	.venv/bin/python -m bench
