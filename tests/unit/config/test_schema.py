"""Tests for exporter.config: defaults, a full round trip, and the exact text of every error."""

from __future__ import annotations

import dataclasses
import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from exporter.config import (
    DEFAULT_LISTEN,
    SECTIONS,
    Config,
    DropsConfig,
    FilterConfig,
    LoggingConfig,
    MetricsConfig,
    ProbesConfig,
    load_config,
    parse_config,
)
from exporter.config.model import TracesConfig
from exporter.errors import ConfigError

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def error(text: str, env: dict[str, str] | None = None) -> str:
    """The message parse_config raises for ``text`` (named c.yaml), failing the test if it parses."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", env={} if env is None else env)
    return str(caught.value)


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, "c.yaml", env={} if env is None else env)


# --- defaults --------------------------------------------------------------------------------


def test_no_file_gives_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.metrics == MetricsConfig(listen="0.0.0.0:9977", host="0.0.0.0", port=9977)
    assert DEFAULT_LISTEN == "0.0.0.0:9977"
    assert config.drops == DropsConfig(enabled=True, max_series=4096)
    assert config.probes == ProbesConfig(mode="auto", exclude=(), strict=False)
    assert config.filter == FilterConfig(src=(), dst=(), protocols=(), ports=(), interfaces=())
    assert config.logging == LoggingConfig(level="info", format="text")
    assert config.traces == TracesConfig(
        exporter=None,
        endpoint=None,
        protocol=None,
        service_name=None,
        max_queue_size=2048,
        max_export_batch_size=512,
        schedule_delay_ms=1000,
        export_timeout_ms=10000,
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(str(path)) == Config()


def test_null_section_and_null_key_take_defaults() -> None:
    config = parse("metrics:\ndrops:\n  max_series:\n  enabled: ~\nfilter:\n  src: null\n")
    assert config == Config()


def test_partial_file_keeps_other_defaults() -> None:
    config = parse("drops:\n  max_series: 100\n")
    assert config.drops == DropsConfig(enabled=True, max_series=100)
    assert config.metrics == MetricsConfig()
    assert config.filter == FilterConfig()


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.drops.max_series = 1  # type: ignore[misc]


def test_schema_defaults_match_dataclass_defaults() -> None:
    # The loader fills missing keys from the table; load_config(None) uses the dataclasses. They must agree.
    for section in SECTIONS:
        built = section.build({key.name: key.default for key in section.keys})
        assert built == getattr(Config(), section.name), section.name


FULL = """\
metrics:
  listen: "[::1]:9100"
drops:
  enabled: false
  max_series: 65536
probes:
  mode: kprobe
  exclude: [ip_rcv, tcp_v4_rcv]
  strict: true
filter:
  src: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
  dst: ["fe80::1"]
  protocols: [TCP, udp, 132, icmpv6, 0]
  ports: [53, "8000-8080", 65535]
  interfaces: [eth0, bond0.100, abcdefghijklmno]
logging:
  level: debug
  format: json
traces:
  exporter: otlp
  endpoint: "https://otel-collector.observability.svc:4317"
  protocol: grpc
  service_name: pktpath-node-7
  max_queue_size: 100000
  max_export_batch_size: 1000
  schedule_delay_ms: 250
  export_timeout_ms: 30000
"""


def test_full_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(FULL)
    assert load_config(str(path), env={}) == Config(
        metrics=MetricsConfig(listen="[::1]:9100", host="::1", port=9100),
        drops=DropsConfig(enabled=False, max_series=65536),
        probes=ProbesConfig(mode="kprobe", exclude=("ip_rcv", "tcp_v4_rcv"), strict=True),
        filter=FilterConfig(
            src=(IPv4Network("10.0.0.0/8"), IPv6Network("2001:db8::/32"), IPv4Network("192.0.2.7/32")),
            dst=(IPv6Network("fe80::1/128"),),
            protocols=(6, 17, 132, 58, 0),
            ports=((53, 53), (8000, 8080), (65535, 65535)),
            interfaces=("eth0", "bond0.100", "abcdefghijklmno"),
        ),
        logging=LoggingConfig(level="debug", format="json"),
        traces=TracesConfig(
            exporter="otlp",
            endpoint="https://otel-collector.observability.svc:4317",
            protocol="grpc",
            service_name="pktpath-node-7",
            max_queue_size=100000,
            max_export_batch_size=1000,
            schedule_delay_ms=250,
            export_timeout_ms=30000,
        ),
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("localhost:0", "localhost", 0),
        ("127.0.0.1:65535", "127.0.0.1", 65535),
        ("[::]:9977", "::", 9977),
        ("metrics-1.example.com:80", "metrics-1.example.com", 80),
    ],
)
def test_listen_forms_accepted(listen: str, host: str, port: int) -> None:
    assert parse(f'metrics:\n  listen: "{listen}"\n').metrics == MetricsConfig(listen=listen, host=host, port=port)


def test_protocol_names_are_case_insensitive_and_map_to_iana_numbers() -> None:
    text = "filter:\n  protocols: [ICMP, igmp, Tcp, udp, gre, esp, ah, icmpv6, SCTP]\n"
    assert parse(text).filter.protocols == (1, 2, 6, 17, 47, 50, 51, 58, 132)


def test_yaml_int_and_bool_spellings_follow_yaml_1_1() -> None:
    config = parse("drops:\n  max_series: 0x1000\n  enabled: no\nprobes:\n  strict: yes\n")
    assert config.drops == DropsConfig(enabled=False, max_series=4096)
    assert config.probes.strict is True


# --- reading files ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}: cannot read config: No such file or directory"
    assert caught.value.exit_status == 2


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: cannot read config: Is a directory"


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"logging:\n  level: \xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}: cannot read config: not UTF-8 text (bad byte at offset 18)"


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("drops:\n  max_series: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}:2: drops.max_series: 1 is out of range 16..1048576"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKTPATH_TEST_PORT", "9123")
    config = parse_config('metrics:\n  listen: "127.0.0.1:${PKTPATH_TEST_PORT}"\n')
    assert config.metrics.port == 9123
    monkeypatch.delenv("PKTPATH_TEST_PORT")
    with pytest.raises(ConfigError) as caught:
        parse_config('metrics:\n  listen: "127.0.0.1:${PKTPATH_TEST_PORT}"\n')
    assert str(caught.value) == "<config>:2: metrics.listen: environment variable PKTPATH_TEST_PORT is not set"


# --- YAML structure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "drops:\n  enabled: true\n max_series: 5\n",
            "c.yaml:3:2: invalid YAML: expected <block end>, but found '<block mapping start>'",
        ),
        ("filter:\n  src: [10.0.0.0/8\n", "c.yaml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("logging:\n\tlevel: info\n", "c.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token"),
        ('logging: {level: "info}\n', "c.yaml:2:1: invalid YAML: found unexpected end of stream"),
        (
            "a: 1\n---\nb: 2\n",
            "c.yaml:2:1: invalid YAML: expected a single document in the stream, but found another document",
        ),
        (
            "drops:\n  enabled: \x07\n",
            "c.yaml:2:12: invalid YAML: unacceptable character #x0007: special characters are not allowed",
        ),
        ("metrics: *nowhere\n", "c.yaml:1:10: invalid YAML: found undefined alias 'nowhere'"),
    ],
)
def test_yaml_syntax_errors(text: str, message: str) -> None:
    assert error(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- metrics\n- drops\n", "c.yaml:1: expected a mapping at the top level, got list"),
        ("hello\n", 'c.yaml:1: expected a mapping at the top level, got string "hello"'),
        ("# comment\n\n42\n", "c.yaml:1: expected a mapping at the top level, got integer 42"),
    ],
)
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    assert error(text) == message


def test_unknown_top_level_key_suggests_the_closest() -> None:
    assert error("drops: {}\nmetric:\n  listen: a:1\n") == (
        "c.yaml:2: metric: unknown key (known: metrics, drops, probes, filter, sampling, kubernetes, logging, traces); "
        "did you mean 'metrics'?"
    )


def test_unknown_nested_key_suggests_the_closest() -> None:
    assert error("metrics:\n  lisen: a:1\n") == (
        "c.yaml:2: metrics.lisen: unknown key (known: listen); did you mean 'listen'?"
    )
    assert error("drops:\n  enabled: true\n  max_serie: 10\n") == (
        "c.yaml:3: drops.max_serie: unknown key (known: enabled, max_series); did you mean 'max_series'?"
    )


def test_unknown_key_without_a_close_match_has_no_suggestion() -> None:
    assert error("probes:\n  zzz: 1\n") == "c.yaml:2: probes.zzz: unknown key (known: mode, exclude, strict)"
    assert error("qqqq: 1\n") == (
        "c.yaml:1: qqqq: unknown key (known: metrics, drops, probes, filter, sampling, kubernetes, logging, traces)"
    )


def test_non_string_key_is_reported_by_its_text() -> None:
    assert error("drops:\n  1: x\n") == "c.yaml:2: drops.1: unknown key (known: enabled, max_series)"
    assert error("drops:\n  ? [a]\n  : x\n") == "c.yaml:2: drops: a key must be a plain name, got list"


def test_duplicate_keys() -> None:
    assert error("logging:\n  level: info\ndrops: {}\nlogging:\n  format: json\n") == (
        "c.yaml:4: logging: duplicate key (first set on line 1)"
    )
    assert error("logging:\n  level: info\n  format: text\n  level: debug\n") == (
        "c.yaml:4: logging.level: duplicate key (first set on line 2)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drops: 5\n", "c.yaml:1: drops: expected a mapping, got integer 5"),
        ("filter:\n  - src\n", "c.yaml:2: filter: expected a mapping, got list"),
        ("logging: debug\n", 'c.yaml:1: logging: expected a mapping, got string "debug"'),
    ],
)
def test_section_must_be_a_mapping(text: str, message: str) -> None:
    assert error(text) == message


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drops:\n  max_series: lots\n", 'c.yaml:2: drops.max_series: expected an integer, got string "lots"'),
        ('drops:\n  max_series: "4096"\n', 'c.yaml:2: drops.max_series: expected an integer, got string "4096"'),
        ("drops:\n  max_series: true\n", "c.yaml:2: drops.max_series: expected an integer, got boolean true"),
        ("drops:\n  max_series: 4096.0\n", "c.yaml:2: drops.max_series: expected an integer, got float 4096.0"),
        ("drops:\n  max_series: [1]\n", "c.yaml:2: drops.max_series: expected an integer, got list"),
        ("drops:\n  max_series: !!int ten\n", 'c.yaml:2: drops.max_series: "ten" is not a valid integer'),
        (
            "drops:\n  max_series: !custom 5\n",
            "c.yaml:2: drops.max_series: expected an integer, got value tagged !custom",
        ),
        ("drops:\n  enabled: 1\n", "c.yaml:2: drops.enabled: expected a boolean, got integer 1"),
        ('drops:\n  enabled: "true"\n', 'c.yaml:2: drops.enabled: expected a boolean, got string "true"'),
        ("probes:\n  strict: 0\n", "c.yaml:2: probes.strict: expected a boolean, got integer 0"),
        ("metrics:\n  listen: 9977\n", "c.yaml:2: metrics.listen: expected a string, got integer 9977"),
        ("metrics:\n  listen: {host: a}\n", "c.yaml:2: metrics.listen: expected a string, got mapping"),
        ("logging:\n  level: true\n", "c.yaml:2: logging.level: expected a string, got boolean true"),
        ("probes:\n  mode: 2020-01-01\n", "c.yaml:2: probes.mode: expected a string, got timestamp 2020-01-01"),
        ("probes:\n  exclude: ip_rcv\n", 'c.yaml:2: probes.exclude: expected a list, got string "ip_rcv"'),
        ("filter:\n  interfaces: eth0\n", 'c.yaml:2: filter.interfaces: expected a list, got string "eth0"'),
        ("filter:\n  ports: 80\n", "c.yaml:2: filter.ports: expected a list, got integer 80"),
        ("filter:\n  src: {a: 1}\n", "c.yaml:2: filter.src: expected a list, got mapping"),
        (
            "filter:\n  interfaces:\n    - eth0\n    - 7\n",
            "c.yaml:4: filter.interfaces[1]: expected a string, got integer 7",
        ),
        ("filter:\n  src: [10.0.0.0/8, ~]\n", "c.yaml:2: filter.src[1]: expected a string, got null"),
        (
            "filter:\n  protocols: [true]\n",
            "c.yaml:2: filter.protocols[0]: expected a protocol name or number, got boolean true",
        ),
        (
            "filter:\n  ports: [80, [1, 2]]\n",
            'c.yaml:2: filter.ports[1]: expected a port number or a "LOW-HIGH" range, got list',
        ),
        (
            "filter:\n  ports: [false]\n",
            'c.yaml:2: filter.ports[0]: expected a port number or a "LOW-HIGH" range, got boolean false',
        ),
    ],
)
def test_wrong_types(text: str, message: str) -> None:
    assert error(text) == message


def test_max_series_range() -> None:
    assert parse("drops:\n  max_series: 16\n").drops.max_series == 16
    assert parse("drops:\n  max_series: 1048576\n").drops.max_series == 1048576
    assert error("drops:\n  max_series: 15\n") == "c.yaml:2: drops.max_series: 15 is out of range 16..1048576"
    assert error("drops:\n  max_series: 1048577\n") == "c.yaml:2: drops.max_series: 1048577 is out of range 16..1048576"
    assert error("drops:\n  max_series: -1\n") == "c.yaml:2: drops.max_series: -1 is out of range 16..1048576"


# --- metrics.listen --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("9977", '"9977" is not host:port (e.g. "0.0.0.0:9977" or "[::1]:9977")'),
        ("host:", 'missing port in "host:"'),
        (":99999", 'port 99999 in ":99999" is out of range 0..65535'),
        (":9977", 'missing host in ":9977" (use "0.0.0.0:9977" for all interfaces)'),
        ("[::1", "missing ']' in \"[::1\""),
        ("[::1]", 'missing port in "[::1]"'),
        ("[::1]9977", "expected ':' after ']' in \"[::1]9977\""),
        ("[1.2.3.4]:80", '"1.2.3.4" in "[1.2.3.4]:80" is not an IPv6 address'),
        ("a:b", 'port "b" in "a:b" is not a number'),
        ("a:-1", 'port "-1" in "a:-1" is not a number'),
        ("a:65536", 'port 65536 in "a:65536" is out of range 0..65535'),
        ("a:99999999999999999999", 'port 99999999999999999999 in "a:99999999999999999999" is out of range 0..65535'),
        ("::1:9977", 'an IPv6 address needs brackets: write "[::1]:9977" instead of "::1:9977"'),
        ("300.1.1.1:9977", '"300.1.1.1" in "300.1.1.1:9977" is not a valid IPv4 address'),
        ("bad_host:9977", '"bad_host" in "bad_host:9977" is not a valid host name or IP address'),
        (" 0.0.0.0:9977", '" 0.0.0.0" in " 0.0.0.0:9977" is not a valid host name or IP address'),
    ],
)
def test_bad_listen(listen: str, reason: str) -> None:
    assert error(f"# metrics endpoint\nmetrics:\n  listen: '{listen}'\n") == f"c.yaml:3: metrics.listen: {reason}"


# --- filter ----------------------------------------------------------------------------------


def test_cidrs_ipv4_ipv6_and_bare_addresses() -> None:
    config = parse('filter:\n  src: ["::/0", 0.0.0.0/0, "2001:db8::1"]\n  dst: [10.1.2.3]\n')
    assert config.filter.src == (IPv6Network("::/0"), IPv4Network("0.0.0.0/0"), IPv6Network("2001:db8::1/128"))
    assert config.filter.dst == (IPv4Network("10.1.2.3/32"),)


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("10.0.0.0/33", '"10.0.0.0/33": prefix length 33 is out of range 0..32'),
        ("2001:db8::/129", '"2001:db8::/129": prefix length 129 is out of range 0..128'),
        ("10.0.0.0/x", '"10.0.0.0/x": prefix length "x" is not a number'),
        ("10.0.0.0/", '"10.0.0.0/": prefix length "" is not a number'),
        ("not-an-ip", '"not-an-ip" is not an IPv4 or IPv6 address or network'),
        ("10.0.0.256", '"10.0.0.256" is not an IPv4 or IPv6 address or network'),
        ("10.0.0.1/24", "10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"),
        ("2001:db8::1/32", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"),
        ("fe80::1%eth0", "\"fe80::1%eth0\": a zone index ('%...') is not allowed in a filter address"),
    ],
)
def test_bad_cidr(cidr: str, reason: str) -> None:
    text = f'filter:\n  dst:\n    - 192.0.2.0/24\n    - "{cidr}"\n'
    assert error(text) == f"c.yaml:4: filter.dst[1]: {reason}"


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        ("0", "port 0 is out of range 1..65535"),
        ("65536", "port 65536 is out of range 1..65535"),
        ('"20-10"', 'port range "20-10" is reversed: 20 is above 10'),
        ('"0-10"', 'port 0 in "0-10" is out of range 1..65535'),
        ('"10-70000"', 'port 70000 in "10-70000" is out of range 1..65535'),
        ("x", '"x" is not a port range (expected "LOW-HIGH", e.g. "8000-8080")'),
        ('"80"', '"80" is not a port range (expected "LOW-HIGH", e.g. "8000-8080")'),
        ('"80 - 90"', '"80 - 90" is not a port range (expected "LOW-HIGH", e.g. "8000-8080")'),
    ],
)
def test_bad_port(port: str, reason: str) -> None:
    assert error(f"filter:\n  ports: [443, {port}]\n") == f"c.yaml:2: filter.ports[1]: {reason}"


def test_port_range_may_be_a_single_port() -> None:
    assert parse('filter:\n  ports: ["1-65535", "7-7"]\n').filter.ports == ((1, 65535), (7, 7))


def test_bad_protocol() -> None:
    assert error("filter:\n  protocols: [tcp, tpc]\n") == (
        'c.yaml:2: filter.protocols[1]: unknown protocol "tpc" '
        "(known: icmp, igmp, tcp, udp, gre, esp, ah, icmpv6, sctp, or a number 0..255); did you mean 'tcp'?"
    )
    assert error("filter:\n  protocols: [quic]\n") == (
        'c.yaml:2: filter.protocols[0]: unknown protocol "quic" '
        "(known: icmp, igmp, tcp, udp, gre, esp, ah, icmpv6, sctp, or a number 0..255)"
    )
    prefix = "c.yaml:2: filter.protocols[0]: protocol number"
    assert error("filter:\n  protocols: [256]\n") == f"{prefix} 256 is out of range 0..255"
    assert error("filter:\n  protocols: [-1]\n") == f"{prefix} -1 is out of range 0..255"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ('"abcdefghijklmnop"', 'interface name "abcdefghijklmnop" is longer than 15 bytes'),
        ('"ethé12345678901"', 'interface name "eth\\u00e912345678901" is longer than 15 bytes'),
        ("eth/0", "interface name \"eth/0\" contains '/'"),
        ('"eth0:1"', "interface name \"eth0:1\" contains ':'"),
        ('"eth 0"', 'interface name "eth 0" contains whitespace'),
        ('""', "interface name is empty"),
        ('".."', '".." is not a valid interface name'),
    ],
)
def test_bad_interface(name: str, reason: str) -> None:
    assert error(f"filter:\n  interfaces: [lo, {name}]\n") == f"c.yaml:2: filter.interfaces[1]: {reason}"


# --- probes and logging ----------------------------------------------------------------------


def test_bad_mode() -> None:
    assert error("probes:\n  mode: kprobes\n") == (
        "c.yaml:2: probes.mode: \"kprobes\" is not one of auto, fentry, kprobe, tracepoint; did you mean 'kprobe'?"
    )
    assert error("probes:\n  mode: AUTO\n") == (
        'c.yaml:2: probes.mode: "AUTO" is not one of auto, fentry, kprobe, tracepoint'
    )


@pytest.mark.parametrize("mode", ["auto", "fentry", "kprobe", "tracepoint"])
def test_every_mode_accepted(mode: str) -> None:
    assert parse(f"probes:\n  mode: {mode}\n").probes.mode == mode


def test_bad_hop_name() -> None:
    assert error("probes:\n  exclude: [ip_rcv, Tcp_rcv]\n") == (
        'c.yaml:2: probes.exclude[1]: "Tcp_rcv" is not a hop name '
        "(lower-case letters, digits and '_', starting with a letter)"
    )
    assert error("probes:\n  exclude: [_x]\n").startswith('c.yaml:2: probes.exclude[0]: "_x" is not a hop name')


def test_bad_log_level_and_format() -> None:
    assert error("logging:\n  level: warning\n") == (
        "c.yaml:2: logging.level: \"warning\" is not one of debug, info, warn, error; did you mean 'warn'?"
    )
    assert error("logging:\n  format: xml\n") == 'c.yaml:2: logging.format: "xml" is not one of text, json'


# --- traces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", ["otlp", "console", "none"])
def test_traces_exporter_accepted(exporter: str) -> None:
    assert parse(f"traces:\n  exporter: {exporter}\n").traces.exporter == exporter


def test_traces_exporter_null_is_from_the_environment_at_start() -> None:
    assert parse("traces:\n  exporter: null\n  endpoint:\n  protocol: ~\n").traces == TracesConfig()


def test_bad_traces_exporter() -> None:
    assert error("traces:\n  exporter: otpl\n") == (
        "c.yaml:2: traces.exporter: \"otpl\" is not one of otlp, console, none; did you mean 'otlp'?"
    )
    assert error("traces:\n  exporter: jaeger\n") == (
        'c.yaml:2: traces.exporter: "jaeger" is not one of otlp, console, none'
    )
    assert error("traces:\n  exporter: false\n") == ("c.yaml:2: traces.exporter: expected a string, got boolean false")


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://localhost:4318",
        "http://127.0.0.1:4317",
        "https://collector.example.com",
        "http://[::1]:4318/v1/traces",
        "https://gw.example.com/otlp/v1/traces?tenant=a",
        "http://otel_collector:4317",  # compose service names may have '_'
    ],
)
def test_traces_endpoint_accepted(endpoint: str) -> None:
    assert parse(f'traces:\n  endpoint: "{endpoint}"\n').traces.endpoint == endpoint


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("localhost:4317", '"localhost:4317" is not an http:// or https:// URL (e.g. "http://localhost:4318")'),
        ("grpc://c:4317", '"grpc://c:4317" is not an http:// or https:// URL (e.g. "http://localhost:4318")'),
        ("collector", '"collector" is not an http:// or https:// URL (e.g. "http://localhost:4318")'),
        ("http://", 'missing host in "http://"'),
        ("http://:4317", 'missing host in "http://:4317"'),
        ("http://c :4317", 'URL "http://c :4317" contains whitespace'),
        ("http://[::1", '"http://[::1" is not a valid URL (e.g. "http://localhost:4318")'),
        ("http://c:x", 'port in "http://c:x" is not a number 1..65535'),
        ("http://c:0", 'port in "http://c:0" is not a number 1..65535'),
        ("http://c:65536", 'port in "http://c:65536" is not a number 1..65535'),
        ("http://c:", 'port in "http://c:" is not a number 1..65535'),
    ],
)
def test_bad_traces_endpoint(endpoint: str, reason: str) -> None:
    assert error(f'traces:\n  endpoint: "{endpoint}"\n') == f"c.yaml:2: traces.endpoint: {reason}"


def test_traces_endpoint_expands_variables() -> None:
    text = 'traces:\n  endpoint: "http://${NODE_IP:-localhost}:4318"\n'
    assert parse(text, env={"NODE_IP": "10.0.0.7"}).traces.endpoint == "http://10.0.0.7:4318"
    assert parse(text).traces.endpoint == "http://localhost:4318"
    assert error('traces:\n  endpoint: "${EP}"\n', env={"EP": "c:4317"}) == (
        'c.yaml:2: traces.endpoint: "c:4317" is not an http:// or https:// URL (e.g. "http://localhost:4318") '
        '(expanded from "${EP}")'
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_traces_protocol_accepted(protocol: str) -> None:
    assert parse(f"traces:\n  protocol: {protocol}\n").traces.protocol == protocol


def test_bad_traces_protocol() -> None:
    assert error("traces:\n  protocol: grcp\n") == (
        "c.yaml:2: traces.protocol: \"grcp\" is not one of grpc, http/protobuf; did you mean 'grpc'?"
    )
    assert error("traces:\n  protocol: http\n") == (
        'c.yaml:2: traces.protocol: "http" is not one of grpc, http/protobuf'
    )
    assert error("traces:\n  protocol: http/json\n") == (
        'c.yaml:2: traces.protocol: "http/json" is not one of grpc, http/protobuf'
    )


def test_traces_service_name() -> None:
    assert parse("traces:\n  service_name: pktpath-edge\n").traces.service_name == "pktpath-edge"
    assert error('traces:\n  service_name: ""\n') == "c.yaml:2: traces.service_name: service name is empty"
    assert error('traces:\n  service_name: "  "\n') == "c.yaml:2: traces.service_name: service name is empty"
    assert error("traces:\n  service_name: 7\n") == ("c.yaml:2: traces.service_name: expected a string, got integer 7")


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [
        ("max_queue_size", 1, 1000000),
        ("schedule_delay_ms", 1, 60000),
        ("export_timeout_ms", 1, 600000),
    ],
)
def test_traces_integer_ranges(key: str, low: int, high: int) -> None:
    assert getattr(parse(f"traces:\n  {key}: {low}\n  max_export_batch_size: 1\n").traces, key) == low
    assert getattr(parse(f"traces:\n  {key}: {high}\n").traces, key) == high
    assert error(f"traces:\n  {key}: {low - 1}\n") == f"c.yaml:2: traces.{key}: {low - 1} is out of range {low}..{high}"
    assert error(f"traces:\n  {key}: {high + 1}\n") == (
        f"c.yaml:2: traces.{key}: {high + 1} is out of range {low}..{high}"
    )
    assert error(f'traces:\n  {key}: "10"\n') == f'c.yaml:2: traces.{key}: expected an integer, got string "10"'


def test_traces_batch_size_is_bounded_by_the_queue() -> None:
    config = parse("traces:\n  max_queue_size: 64\n  max_export_batch_size: 64\n")
    assert (config.traces.max_queue_size, config.traces.max_export_batch_size) == (64, 64)
    assert parse("traces:\n  max_export_batch_size: 2048\n").traces.max_export_batch_size == 2048
    assert error("traces:\n  max_export_batch_size: 0\n") == (
        "c.yaml:2: traces.max_export_batch_size: 0 is out of range 1..1000000"
    )
    # Two keys are involved, so the message has no line: it names both keys instead.
    assert error("traces:\n  max_queue_size: 100\n") == (
        "traces.max_export_batch_size: 512 is out of range 1..100 (it cannot exceed traces.max_queue_size)"
    )
    assert error("traces:\n  max_export_batch_size: 4096\n") == (
        "traces.max_export_batch_size: 4096 is out of range 1..2048 (it cannot exceed traces.max_queue_size)"
    )


def test_unknown_traces_key() -> None:
    assert error("traces:\n  endpiont: http://c:4318\n") == (
        "c.yaml:2: traces.endpiont: unknown key (known: exporter, endpoint, protocol, service_name, max_queue_size, "
        "max_export_batch_size, schedule_delay_ms, export_timeout_ms); did you mean 'endpoint'?"
    )


# --- ${VAR} expansion ------------------------------------------------------------------------


def test_undefined_variable() -> None:
    assert error('metrics:\n  listen: "0.0.0.0:${PKTPATH_PORT}"\n') == (
        "c.yaml:2: metrics.listen: environment variable PKTPATH_PORT is not set"
    )


def test_variable_is_expanded() -> None:
    config = parse('metrics:\n  listen: "${HOST}:${PORT}"\n', env={"HOST": "127.0.0.1", "PORT": "9100"})
    assert config.metrics == MetricsConfig(listen="127.0.0.1:9100", host="127.0.0.1", port=9100)


def test_variable_default() -> None:
    text = 'metrics:\n  listen: "${HOST:-localhost}:${PORT:-9200}"\n'
    assert parse(text).metrics == MetricsConfig(listen="localhost:9200", host="localhost", port=9200)
    # A set variable wins over the default; an empty one does not (shell ":-" semantics).
    assert parse(text, env={"HOST": "", "PORT": "1"}).metrics == MetricsConfig(
        listen="localhost:1", host="localhost", port=1
    )


def test_empty_variable_without_default_is_empty_not_an_error() -> None:
    assert parse('logging:\n  level: "${L}info"\n', env={"L": ""}).logging.level == "info"


def test_dollar_dollar_is_a_literal_dollar() -> None:
    config = parse('filter:\n  interfaces: ["a$$b", "$$", "x$y"]\n', env={"b": "NO"})
    assert config.filter.interfaces == ("a$b", "$", "x$y")
    # "$${X}" is a literal "${X}", not a reference (and not an unset-variable error).
    assert error('probes:\n  mode: "$${X}"\n') == (
        'c.yaml:2: probes.mode: "${X}" is not one of auto, fentry, kprobe, tracepoint (expanded from "$${X}")'
    )


def test_expansion_is_one_pass() -> None:
    # A variable's value is used as is: "${B}" inside A is not looked up again.
    config = parse('filter:\n  interfaces: ["${A}"]\n', env={"A": "${B}", "B": "eth0"})
    assert config.filter.interfaces == ("${B}",)


def test_expansion_in_list_items_and_cidrs() -> None:
    text = 'filter:\n  src: ["${NET}"]\n  interfaces: [lo, "${UPLINK:-eth9}"]\n'
    config = parse(text, env={"NET": "10.9.0.0/16"})
    assert config.filter.src == (IPv4Network("10.9.0.0/16"),)
    assert config.filter.interfaces == ("lo", "eth9")
    assert error(text) == "c.yaml:2: filter.src[0]: environment variable NET is not set"


def test_check_applies_to_the_expanded_value() -> None:
    assert error('filter:\n  src: ["${NET}"]\n', env={"NET": "10.0.0.1/8"}) == (
        'c.yaml:2: filter.src[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8? (expanded from "${NET}")'
    )


def test_expansion_never_produces_an_integer() -> None:
    assert error('drops:\n  max_series: "${N}"\n', env={"N": "100"}) == (
        'c.yaml:2: drops.max_series: expected an integer, got string "${N}" (${VAR} expansion only produces strings)'
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a${", "unterminated variable reference \"${\" (missing '}')"),
        ("${HOST:-x", "unterminated variable reference \"${HOST:-x\" (missing '}')"),
        ("${1X}", 'malformed variable reference "${1X}" (use ${NAME} or ${NAME:-default})'),
        ("${}", 'malformed variable reference "${}" (use ${NAME} or ${NAME:-default})'),
        ("${A-B}", 'malformed variable reference "${A-B}" (use ${NAME} or ${NAME:-default})'),
        ("${A:-${B}", 'malformed variable reference "${A:-${B}" (use ${NAME} or ${NAME:-default})'),
    ],
)
def test_malformed_reference(value: str, reason: str) -> None:
    text = f'drops: {{}}\nmetrics:\n  listen: "{value}"\n'
    assert error(text, env={"A": "x"}) == f"c.yaml:3: metrics.listen: {reason}"


# --- error shape -----------------------------------------------------------------------------


def test_line_numbers_follow_the_offending_node() -> None:
    text = (
        "# pktpath\n"  # 1
        "metrics:\n"  # 2
        "  listen: 0.0.0.0:9977\n"  # 3
        "\n"  # 4
        "filter:\n"  # 5
        "  src:\n"  # 6
        "    - 10.0.0.0/8\n"  # 7
        "    - 192.168.0.0/16\n"  # 8
        "    - 172.16.0.1/12\n"  # 9
        "  ports: [80]\n"  # 10
    )
    assert error(text) == "c.yaml:9: filter.src[2]: 172.16.0.1/12 has host bits set; did you mean 172.16.0.0/12?"
    # A block scalar's value starts on the line of its indicator.
    assert error("logging:\n  level: >-\n    verbose\n") == (
        'c.yaml:2: logging.level: "verbose" is not one of debug, info, warn, error'
    )


def test_errors_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse('filter:\n  interfaces: ["a\\nb"]\n')
    assert str(caught.value) == 'c.yaml:2: filter.interfaces[0]: interface name "a\\nb" contains whitespace'
    assert "\n" not in str(caught.value)
    assert caught.value.exit_status == 2


def test_long_values_are_shortened_in_messages() -> None:
    message = error(f"logging:\n  level: {'x' * 200}\n")
    assert message == f'c.yaml:2: logging.level: "{"x" * 57}..." is not one of debug, info, warn, error'


# --- docs stay in step with the schema -------------------------------------------------------


def test_docs_name_every_key() -> None:
    doc = DOCS.read_text()
    for section in SECTIONS:
        for key in section.keys:
            assert f"`{section.name}.{key.name}`" in doc, f"{section.name}.{key.name} is not documented"


def test_docs_full_example_is_the_defaults() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    full = blocks[0]
    assert parse(full) == Config()
    for section in SECTIONS:
        for key in section.keys:
            assert re.search(rf"^  {key.name}:", full, flags=re.MULTILINE), f"{section.name}.{key.name} missing"


def test_docs_examples_parse() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        parse(block, env={"UPLINK": "eth1"})
