"""The Spark driver's class-data-sharing archive (spark_jobs/jvm_archive.py): a session started with
it really maps it (``-Xshare:on`` makes the JVM refuse to start otherwise), and an archive the JVM
cannot use is ignored, never a failed run. Each case is a process of its own: one JVM per process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spark_jobs.jvm_archive import archive_path, build_archive, driver_options

pytestmark = pytest.mark.integration

PROBE = (
    "import sys; from spark_jobs.session import SparkSettings, build_spark; "
    "s = build_spark(SparkSettings(show_progress=False, java_options=SparkSettings().java_options + ' ' + sys.argv[1])); "
    "print('options', s.sparkContext.getConf().get('spark.driver.extraJavaOptions')); print('rows', s.range(3).count())"
)


def probe(extra: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, extra], env=env, capture_output=True, text=True, timeout=600)


def test_sessions_map_the_archive_and_ignore_one_they_cannot_use(tmp_path, monkeypatch):
    path = archive_path()
    if path is None:
        pytest.skip("no java on this machine")
    build_archive(path)  # `make install` made it; a checkout without it makes it here, once
    env = {**os.environ}

    mapped = probe("-Xshare:on", env)
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    assert f"-XX:SharedArchiveFile={path}" in mapped.stdout and "rows 3" in mapped.stdout, mapped.stdout

    # A damaged archive under the expected name (a foreign JVM's, a half-copied cache) costs the speed only.
    monkeypatch.setenv("SLUICE_JVM_ARCHIVE_DIR", str(tmp_path))
    broken = archive_path()
    broken.write_bytes(b"not a CDS archive" * 64)
    assert str(broken) in driver_options()
    env["SLUICE_JVM_ARCHIVE_DIR"] = str(tmp_path)
    ignored = probe("", env)
    assert ignored.returncode == 0 and "rows 3" in ignored.stdout, ignored.stderr[-3000:]
    assert str(broken) in ignored.stdout
    refused = probe("-Xshare:on", env)  # the same archive, demanded: the JVM does check it
    assert refused.returncode != 0

    broken.unlink()
    assert driver_options() == ""  # no archive yet: the JVM's own defaults
