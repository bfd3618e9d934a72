"""``shoal convert`` as a process: Alloy's exit codes, stderr, -o, --report, -b, stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.convert.test_conformance import CORPUS


def _shoal(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "convert", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_clean_file_to_stdout_exit_0() -> None:
    r = _shoal("--source-format=prometheus", str(CORPUS / "metric_relabel.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (CORPUS / "metric_relabel.alloy").read_text()
    assert r.stderr == b""


def test_errors_refuse_output_unless_bypassed(tmp_path: Path) -> None:
    out, rep = tmp_path / "out.alloy", tmp_path / "report.txt"
    src = str(CORPUS / "unsupported.yaml")
    r = _shoal("-f", "prometheus", "-o", str(out), "-r", str(rep), src)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("Error: (Error) The converter does not support converting the provided")
    assert "nomad service discovery.\n\tat scrape_configs[0].nomad_sd_configs[0]" in err
    assert not out.exists()
    report = rep.read_text()
    assert report.endswith("You can bypass the errors by using the --bypass-errors flag. "
                           "Bypassing errors isn't recommended for production environments.")
    assert "(Info)" not in report

    r = _shoal("-f", "prometheus", "-b", "-o", str(out), "-r", str(rep), src)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == (CORPUS / "unsupported.alloy").read_text()
    report = rep.read_text()
    assert report.endswith("\n\nA configuration file was generated successfully.")
    assert '(Info) Converted scrape_configs job_name "prometheus2" into...' in report


def test_critical_is_not_bypassed(tmp_path: Path) -> None:
    rep = tmp_path / "report.txt"
    r = _shoal("-f", "prometheus", "-b", "-r", str(rep), str(CORPUS / "broken_yaml.yaml"))
    assert r.returncode == 1
    assert r.stdout == b""
    assert r.stderr.decode().strip() == (
        "Error: (Critical) failed to parse Prometheus config: yaml: line 18: "
        "did not find expected key"
    )
    assert rep.read_text().endswith("A configuration file was not generated due to critical "
                                    "issues. Refer to the critical messages for more information.")


def test_stdin_and_required_format(tmp_path: Path) -> None:
    src = (CORPUS / "file.yaml").read_bytes()
    r = _shoal("-f", "prometheus", stdin=src)
    assert r.returncode == 0
    assert r.stdout.decode() == (CORPUS / "file.alloy").read_text()
    r = _shoal(str(CORPUS / "file.yaml"))
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "Error: source-format is a required flag"
    r = _shoal("-f", "prometheus", str(tmp_path))
    assert (r.returncode, r.stderr.decode().strip()) == (1, "Error: cannot convert a directory")
    r = _shoal("-f", "prometheus", str(tmp_path / "missing.yml"))
    assert r.returncode == 1
    assert "No such file" in r.stderr.decode()


def test_prometheus_refusals_are_critical(tmp_path: Path) -> None:
    cases = {
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n":
            'scrape timeout greater than scrape interval for scrape config with job name "a"',
        "scrape_configs:\n  - job_name: a\n  - job_name: a\n":
            "found multiple scrape configs with job name 'a'",
        "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: bogus\n":
            "unknown relabel action 'bogus'",
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 5 minutes\n":
            "not a valid duration string",
        "global:\n  scrape_interval: 1m\n  bogus: 1\n":
            "line 3: field bogus not found in type config.plain",
    }
    for text, reason in cases.items():
        f = tmp_path / "p.yml"
        f.write_text(text)
        r = _shoal("-f", "prometheus", "-b", str(f))
        err = r.stderr.decode()
        assert r.returncode == 1, text
        assert err.startswith("Error: (Critical) failed to parse Prometheus config: "), err
        assert reason in err, err


def test_bearer_token_tls_and_params_convert(tmp_path: Path) -> None:
    f = tmp_path / "p.yml"
    f.write_text(
        "global:\n  scrape_interval: 30s\n"
        "scrape_configs:\n"
        "  - job_name: node/exporter\n"
        "    scheme: https\n    metrics_path: /m\n    honor_labels: true\n"
        "    bearer_token_file: /var/run/token\n"
        "    params:\n      module: [if_mib]\n"
        "    sample_limit: 100\n    body_size_limit: 1MB\n"
        "    tls_config:\n      ca_file: /ca.pem\n      insecure_skip_verify: true\n"
        "    static_configs:\n      - targets: [a:1]\n"
        "remote_write:\n  - url: http://x/api/v1/write\n    remote_timeout: 1m\n"
        "    queue_config:\n      max_shards: 10\n      batch_send_deadline: 10s\n"
        "    bearer_token: s3cret\n"
    )
    r = _shoal("-f", "prometheus", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (
        'prometheus.scrape "node_exporter" {\n'
        "\ttargets = [{\n"
        '\t\t__address__ = "a:1",\n'
        "\t}]\n"
        "\tforward_to   = [prometheus.remote_write.default.receiver]\n"
        '\tjob_name     = "node/exporter"\n'
        "\thonor_labels = true\n"
        "\tparams       = {\n"
        '\t\tmodule = ["if_mib"],\n'
        "\t}\n"
        '\tscrape_interval = "30s"\n'
        '\tmetrics_path    = "/m"\n'
        '\tscheme          = "https"\n'
        "\tbody_size_limit = 1048576\n"
        "\tsample_limit    = 100\n"
        "\n"
        "\tauthorization {\n"
        '\t\ttype             = "Bearer"\n'
        '\t\tcredentials_file = "/var/run/token"\n'
        "\t}\n"
        "\n"
        "\ttls_config {\n"
        '\t\tca_file              = "/ca.pem"\n'
        "\t\tinsecure_skip_verify = true\n"
        "\t}\n"
        "}\n"
        "\n"
        'prometheus.remote_write "default" {\n'
        "\tendpoint {\n"
        '\t\turl            = "http://x/api/v1/write"\n'
        '\t\tremote_timeout = "1m0s"\n'
        "\n"
        "\t\tauthorization {\n"
        '\t\t\ttype        = "Bearer"\n'
        '\t\t\tcredentials = "s3cret"\n'
        "\t\t}\n"
        "\n"
        "\t\tqueue_config {\n"
        "\t\t\tmax_shards          = 10\n"
        '\t\t\tbatch_send_deadline = "10s"\n'
        "\t\t}\n"
        "\n"
        "\t\tmetadata_config { }\n"
        "\t}\n"
        "}\n"
    )


def test_what_shoal_cannot_run_yet_is_a_warning(tmp_path: Path) -> None:
    """sigv4/azuread are written as Alloy writes them; Shoal's checks flag them, exit 0."""
    out, rep = tmp_path / "out.alloy", tmp_path / "report.txt"
    r = _shoal("-f", "prometheus", "-b", "-o", str(out), "-r", str(rep), str(CORPUS / "scrape.yaml"))
    assert r.returncode == 0
    assert out.read_text() == (CORPUS / "scrape.alloy").read_text()
    warnings = r.stderr.decode().splitlines()
    assert warnings == [
        f'(Warning) Shoal cannot run this yet: {out}:{line}:3: unrecognized block name "{name}"'
        for line, name in ((82, "sigv4"), (93, "sigv4"), (110, "azuread"), (125, "azuread"))
    ]
    assert all(w in rep.read_text() for w in warnings)
    r = _shoal("-f", "prometheus", "-o", str(out), str(CORPUS / "file.yaml"))
    assert (r.returncode, r.stderr) == (0, b"")
