# syntax=docker/dockerfile:1
# The Airflow image for docker-compose.yaml: the official apache/airflow 3.3.2 image plus our runtime
# requirements and this repository installed as the `calltouch-metrika` distribution, whose
# `apache_airflow_provider` entry point registers the `calltouch` and `yandexmetrika` connection types.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

WORKDIR /opt/airflow

# Our requirements, installed against the image's own constraints (${HOME}/constraints.txt), so nothing
# the image ships is up- or downgraded: where the constraints pin a package, their version wins; our
# pins add the packages the image does not have.
COPY --chown=airflow:0 requirements.txt /tmp/calltouch-metrika/requirements.txt
RUN python - <<'EOF'
import re
from pathlib import Path

def name(line):
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return m and re.sub(r"[-_.]+", "-", m.group(1)).lower()

constrained = {name(l) for l in Path.home().joinpath("constraints.txt").read_text().splitlines() if name(l)}
ours = [l.strip() for l in Path("/tmp/calltouch-metrika/requirements.txt").read_text().splitlines()]
ours = [l for l in ours if l and not l.startswith("#")]
kept = [l for l in ours if name(l) not in constrained]
taken = [re.split(r"[=<>!~ ;\[]", l, maxsplit=1)[0] for l in ours if name(l) in constrained]
Path("/tmp/calltouch-metrika/requirements-image.txt").write_text("\n".join(kept + taken) + "\n")
print("pinned by us:", kept, "\nversion from the image's constraints:", taken)
EOF
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
      -r /tmp/calltouch-metrika/requirements-image.txt \
      --constraint "${HOME}/constraints.txt"

# The package (editable, from /opt/airflow/plugins: the plugins volume of docker-compose.yaml mounts
# the working tree over it, so code changes need no rebuild) and the sandbox (the API emulator).
COPY --chown=airflow:0 pyproject.toml README.md LICENSE /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 sandbox/ /opt/airflow/sandbox/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
