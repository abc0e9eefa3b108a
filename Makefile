.PHONY: check test lint format bench measure

check: lint test

lint:
	.venv/bin/ruff format --check kiosk tests bench faults
	.venv/bin/ruff check kiosk tests bench faults
	.venv/bin/mypy kiosk faults

format:
	.venv/bin/ruff format kiosk tests bench faults
	.venv/bin/ruff check --fix kiosk tests bench faults

test:
	scripts/test

bench:
	.venv/bin/python -m bench

measure:
	scripts/measure
