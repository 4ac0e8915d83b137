"""The `leadscore` command line: every `run` option also reads LEADSCORE_<NAME>."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from leadscore import __version__
from leadscore.durations import parse_duration_ms, parse_time_ms
from leadscore.errors import ConfigError, LeadscoreError
from leadscore.model import Model, load_model
from leadscore.scoring.explain import JSON_FIELDS
from leadscore.settings import (
    DEFAULT_INPUT_TOPICS,
    PROCESSING_GUARANTEES,
    KafkaSettings,
    MetricsSettings,
    ModelSettings,
    RedisSettings,
    SchemaRegistrySettings,
    Secret,
    Settings,
    WorkerSettings,
    check_topic_name,
    parse_input_topics,
    parse_options,
)

if TYPE_CHECKING:
    from leadscore.state.store import Stored

F = TypeVar("F", bound=Callable[..., Any])

INSPECT_JSON_HELP = "Fields of --json (times: epoch ms of event time, and ISO 8601):\n\n\b\n" + (
    JSON_FIELDS
)


def option(name: str, *more: str, **kwargs: Any) -> Callable[[F], F]:
    """A flag whose environment variable is LEADSCORE_<NAME>, shown in --help."""
    env = "LEADSCORE_" + name.lstrip("-").replace("-", "_").upper()
    if "kafka_options" in more:
        env += "S"
    return click.option(name, *more, envvar=env, show_envvar=True, **kwargs)


INPUT_TOPICS_OPTION = option(
    "--input-topics",
    default=DEFAULT_INPUT_TOPICS,
    show_default=True,
    help="Comma list of input topics: TOPIC=RecordType (Click, Visit, FormSubmission, Call), "
    "or a topic whose name ends in .clicks, .visits, .forms or .calls.",
)


def kafka_client_options(f: F) -> F:
    """How to reach and authenticate to Kafka, shared by every command that talks to it."""
    for decorate in reversed(
        [
            option(
                "--bootstrap-servers",
                default="localhost:9092",
                show_default=True,
                help="Kafka bootstrap servers, host:port[,host:port...].",
            ),
            INPUT_TOPICS_OPTION,
            option(
                "--kafka-option",
                "-X",
                "kafka_options",
                multiple=True,
                metavar="KEY=VALUE",
                help="librdkafka setting passed through to the clients, repeatable "
                "(e.g. -X session.timeout.ms=6000). In the environment: space-separated.",
            ),
            option(
                "--security-protocol",
                type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
                help="Kafka security protocol.",
            ),
            option("--sasl-mechanism", help="SASL mechanism, e.g. SCRAM-SHA-512."),
            option("--sasl-username", help="SASL user name."),
            option(
                "--sasl-password",
                help="SASL password (prefer the environment variable or --sasl-password-file).",
            ),
            option(
                "--sasl-password-file",
                type=click.Path(exists=True, dir_okay=False),
                help="File holding the SASL password.",
            ),
            option("--ssl-ca-location", help="CA certificate file to verify the brokers."),
            option("--ssl-certificate-location", help="Client certificate file (mutual TLS)."),
            option("--ssl-key-location", help="Client private key file (mutual TLS)."),
            option("--ssl-key-password", help="Password of the client private key."),
        ]
    ):
        f = decorate(f)
    return f


def redis_client_options(f: F) -> F:
    """How to reach and authenticate to Redis, shared by every command that talks to it."""
    for decorate in reversed(
        [
            option(
                "--redis-url",
                default="redis://localhost:6379/0",
                show_default=True,
                help="Redis URL: redis://[USER:PASSWORD@]HOST:PORT/DB, or rediss:// for TLS "
                "(a password in it is never printed). On a Cluster, any node's URL.",
            ),
            option(
                "--redis-cluster",
                is_flag=True,
                help="Redis is a Cluster: the state is spread over its nodes by lead.",
            ),
            option(
                "--redis-ca-file",
                type=click.Path(exists=True, dir_okay=False),
                help="CA certificate file to verify Redis (rediss://). Default: the system's.",
            ),
            option(
                "--redis-cert-file",
                type=click.Path(exists=True, dir_okay=False),
                help="Client certificate file, for a Redis that asks for one (rediss://).",
            ),
            option(
                "--redis-key-file",
                type=click.Path(exists=True, dir_okay=False),
                help="Private key of --redis-cert-file.",
            ),
            option(
                "--state-namespace",
                default="ls",
                show_default=True,
                help="Prefix of every Redis key (a rebuild can write beside the live state).",
            ),
        ]
    ):
        f = decorate(f)
    return f


def redis_settings(o: dict[str, Any], **extra: Any) -> RedisSettings:
    if any(c in o["state_namespace"] for c in "{}:") or not o["state_namespace"]:
        raise ConfigError(
            f"--state-namespace {o['state_namespace']!r}: use letters, digits, '-', '_' or "
            "'.' (keys carry Redis Cluster hash tags in braces, parts separated by ':')"
        )
    return RedisSettings(
        url=Secret(o["redis_url"]),
        namespace=o["state_namespace"],
        cluster=o["redis_cluster"],
        ca_file=o["redis_ca_file"],
        cert_file=o["redis_cert_file"],
        key_file=o["redis_key_file"],
        **extra,
    )


def kafka_settings(o: dict[str, Any], **extra: Any) -> KafkaSettings:
    password = o["sasl_password"]
    if o["sasl_password_file"]:
        password = Path(o["sasl_password_file"]).read_text("utf-8").strip()
    return KafkaSettings(
        bootstrap_servers=o["bootstrap_servers"],
        input_topics=parse_input_topics(o["input_topics"]),
        security_protocol=o["security_protocol"],
        sasl_mechanism=o["sasl_mechanism"],
        sasl_username=o["sasl_username"],
        sasl_password=Secret(password) if password else None,
        ssl_ca_location=o["ssl_ca_location"],
        ssl_certificate_location=o["ssl_certificate_location"],
        ssl_key_location=o["ssl_key_location"],
        ssl_key_password=Secret(o["ssl_key_password"]) if o["ssl_key_password"] else None,
        options=parse_options(_split_env(o["kafka_options"])),
        **extra,
    )


def _split_env(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part for value in values for part in value.split())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="leadscore")
def main() -> None:
    """Real-time lead scoring: Kafka events in, state in Redis, scores and stages out.

    Start with `leadscore demo` to see it work on embedded services.
    """


@main.command()
@kafka_client_options
@option(
    "--schema-registry-url",
    help="Confluent Schema Registry URL (http[s]://HOST:PORT, a comma list for several): "
    "inputs in its framing (magic byte, schema id) are read with their writer schema, "
    "resolved to the bundled one; outputs are framed with registered ids. Default: plain "
    "Avro with the bundled schemas.",
)
@option(
    "--schema-registry-user-info",
    metavar="USER:PASSWORD",
    help="HTTP basic auth for the schema registry (prefer the environment variable).",
)
@redis_client_options
@option(
    "--redis-replicas",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Wait for this many Redis replicas to acknowledge each batch's writes before its "
    "offsets are committed (WAIT): a failover to a replica then loses no committed event. "
    "0: do not wait (Redis replicates asynchronously).",
)
@option(
    "--redis-replica-timeout",
    default="1s",
    show_default=True,
    help="How long a batch waits for --redis-replicas; if fewer acknowledged, the worker "
    "reports not ready and writes the batch again.",
)
@option(
    "--accept-state-loss",
    is_flag=True,
    help="Go on when Redis lacks state the committed offsets stand for (it restarted empty "
    "or from an older snapshot), scoring those leads from what Redis holds, instead of "
    "refusing to start. Without it, rebuild the state (README, Operations).",
)
@option(
    "--output-topic",
    default="leads.scores",
    show_default=True,
    help="Topic for ScoreChanged and StageTransitioned records.",
)
@option(
    "--dlq-topic",
    default="leads.dlq",
    show_default=True,
    help="Dead-letter topic for messages that cannot be processed.",
)
@option("--group-id", default="leadscore", show_default=True, help="Kafka consumer group.")
@option(
    "--group-instance-id",
    help="Static group membership id (a restart within the session "
    "timeout keeps the partitions without a rebalance).",
)
@option("--client-id", default="leadscore", show_default=True, help="Kafka client id.")
@option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scoring model YAML file. Default: the bundled default model.",
)
@option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9400,
    show_default=True,
    help="Port of /metrics, /healthz and /readyz; 0 runs no HTTP server.",
)
@option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics server listens on.",
)
@option(
    "--max-clock-skew",
    default="5m",
    show_default=True,
    help="How far in the future an event may be dated before it is dead-lettered.",
)
@option(
    "--processing-guarantee",
    type=click.Choice(PROCESSING_GUARANTEES),
    default="at-least-once",
    show_default=True,
    help="Output delivery: at-least-once (stable ids, consumers deduplicate) or "
    "exactly-once (outputs and offsets in one Kafka transaction per batch, for "
    "read_committed consumers; needs a broker with transactions, e.g. Apache Kafka).",
)
@option(
    "--transactional-id",
    help="exactly-once only: the producer's transactional id, unique per worker and stable "
    "across its restarts. Default: leadscore-GROUP-(group instance id or host name).",
)
@option(
    "--emit-anonymous",
    is_flag=True,
    default=False,
    help="Also publish outputs of anonymous profiles (keyed by anonymous id).",
)
@option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="Most messages per batch. A batch takes what has arrived (up to this many): "
    "under a backlog batches are full, which amortizes the round trips; a smaller size "
    "bounds how long one batch holds an event back.",
)
@option(
    "--batch-linger",
    "--batch-timeout",
    "batch_linger",
    default="0ms",
    show_default=True,
    help="How long a batch waits, after its first message, for more to fill it: 0 takes "
    "what has arrived (lowest latency); a few ms makes fewer, larger batches at a moderate "
    "load (less CPU per event). --batch-timeout is its former name.",
)
@option(
    "--commit-interval",
    default="1s",
    show_default=True,
    help="At-least-once: input offsets are committed at most this often, and whenever "
    "partitions leave or the worker stops (0: after every batch). Fewer commits load the "
    "broker less; a crash replays at most this much more input, which the state's "
    "watermarks skip. Exactly-once commits offsets in every batch's transaction.",
)
@option(
    "--state-ttl",
    default="180d",
    show_default=True,
    help="A lead's state expires after this long without events.",
)
@option(
    "--anonymous-ttl",
    default="30d",
    show_default=True,
    help="An anonymous profile's state (events with no lead id) expires after this long "
    "without events.",
)
@option(
    "--event-memory",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Event ids remembered per profile to drop re-produced duplicates.",
)
@option(
    "--shutdown-timeout",
    default="30s",
    show_default=True,
    help="On SIGTERM, how long (from the signal) to wait for the batch in hand to be "
    "written and published; after it the worker exits without committing the batch, which "
    "is processed again after a restart.",
)
@option(
    "--sweep-interval",
    default="1s",
    show_default=True,
    help="How often to look for time-driven changes that came due (a quiet lead "
    "regressing, a score decaying below a threshold).",
)
@option(
    "--sweep-batch",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Most profiles re-evaluated per sweep round (more rounds follow at once).",
)
@option(
    "--state-cache",
    type=click.IntRange(0),
    default=100_000,
    show_default=True,
    help="Profiles kept in memory between batches, so a busy lead is not read from Redis "
    "again (every write still checks the version; 0 reads every profile every batch).",
)
@option(
    "--clock-speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="For demos and tests: let time run this many times faster than real time "
    "(from --clock-start), so that changes due in days happen in seconds; 0 stops it. "
    "Event timestamps are checked against the same clock.",
)
@option(
    "--clock-start",
    help="With --clock-speed: the moment from which time runs faster, or at which it "
    "stands still (ISO 8601 or epoch milliseconds). Default: when the worker starts.",
)
@option(
    "--partition-idle",
    default="500ms",
    show_default=True,
    help="Event-time alignment: while catching up a backlog, records of the input "
    "partitions are taken in timestamp order across them, so that no topic runs ahead of "
    "another and turns its events late; a partition with more to read but nothing fetched "
    "yet holds the others back for at most this long. Caught-up partitions hold nothing "
    "back. 0 takes records as fetched.",
)
@option(
    "--startup-timeout",
    default="30s",
    show_default=True,
    help="At start-up the worker checks that a broker answers, that every input topic "
    "exists and that Redis answers a PING with the configured credentials, for up to this "
    "long; then it exits (status 1) with one line per problem, naming the setting to check.",
)
@option(
    "--wait-for-services",
    is_flag=True,
    default=False,
    help="Instead of exiting when the start-up checks fail, keep checking and log one line "
    "per problem every --startup-timeout (/readyz answers 503 meanwhile).",
)
@option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="INFO",
    show_default=True,
    help="Log verbosity.",
)
def run(**o: Any) -> None:
    """Run the scoring worker until SIGTERM or Ctrl-C."""
    _configure_logging(o["log_level"])
    settings, model = _worker_settings(o)
    from leadscore.worker import StopRequest, Worker

    stop = StopRequest()
    _stop_on_signals(stop)
    logging.getLogger("leadscore").info(
        "leadscore %s: model %s, group %s", __version__, model.version, settings.kafka.group_id
    )
    try:
        Worker(settings, model).run(stop)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc


def _worker_settings(o: dict[str, Any]) -> tuple[Settings, Any]:
    try:
        settings = Settings(
            kafka=kafka_settings(
                o,
                output_topic=check_topic_name(o["output_topic"]),
                dlq_topic=check_topic_name(o["dlq_topic"]),
                group_id=o["group_id"],
                group_instance_id=o["group_instance_id"],
                client_id=o["client_id"],
                processing_guarantee=o["processing_guarantee"],
                transactional_id=o["transactional_id"],
            ),
            schema_registry=SchemaRegistrySettings(
                url=Secret(o["schema_registry_url"]) if o["schema_registry_url"] else None,
                user_info=Secret(o["schema_registry_user_info"])
                if o["schema_registry_user_info"]
                else None,
            ),
            redis=redis_settings(
                o,
                state_ttl_ms=parse_duration_ms(o["state_ttl"]),
                anonymous_ttl_ms=parse_duration_ms(o["anonymous_ttl"]),
                replicas=o["redis_replicas"],
                replica_timeout_ms=parse_duration_ms(o["redis_replica_timeout"]),
                accept_state_loss=o["accept_state_loss"],
            ),
            model=ModelSettings(o["model"]),
            metrics=MetricsSettings(o["metrics_port"], o["metrics_host"]),
            worker=WorkerSettings(
                batch_size=o["batch_size"],
                batch_linger_ms=parse_duration_ms(o["batch_linger"]),
                commit_interval_s=parse_duration_ms(o["commit_interval"]) / 1000,
                max_clock_skew_ms=parse_duration_ms(o["max_clock_skew"]),
                event_memory=o["event_memory"],
                emit_anonymous=o["emit_anonymous"],
                shutdown_timeout_s=parse_duration_ms(o["shutdown_timeout"]) / 1000,
                sweep_interval_s=parse_duration_ms(o["sweep_interval"]) / 1000,
                sweep_batch=o["sweep_batch"],
                state_cache=o["state_cache"],
                clock_speed=o["clock_speed"],
                clock_start_ms=parse_time_ms(o["clock_start"]) if o["clock_start"] else None,
                partition_idle_ms=parse_duration_ms(o["partition_idle"]),
                startup_timeout_s=parse_duration_ms(o["startup_timeout"]) / 1000,
                wait_for_services=o["wait_for_services"],
            ),
        )
        if settings.schema_registry.url:
            settings.schema_registry.client_config()  # checks the URL and user info
        model = load_model(settings.model.path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    return settings, model


@main.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Stop by itself after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=150,
    show_default=True,
    help="Simulated events per second.",
)
@click.option(
    "--leads", type=click.IntRange(min=1), default=300, show_default=True, help="Simulated people."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Simulator seed.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port of the worker's /metrics (default: a free port).",
)
@click.option(
    "--day-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Real seconds per simulated day: the simulator and the worker share an "
    "accelerated clock, so that quiet leads cool down while you watch. 86400 is real time.",
)
def demo(
    duration: float | None,
    rate: float,
    leads: int,
    seed: int,
    metrics_port: int,
    day_seconds: float,
) -> None:
    """Watch leads being scored live, on an embedded broker and Redis (nothing to install).

    Starts a Kafka-protocol broker and a Redis on free local ports, the traffic simulator
    and the worker, and shows the top leads with their category scores, stage transitions
    (also those that inactivity and decay bring about with no new event), events/s and
    dead letters. Time runs faster (--day-seconds), and the view says so.
    """
    from rich.console import Console

    from leadscore.demo import run_demo

    _configure_logging("WARNING")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    try:
        code = run_demo(
            duration_s=duration,
            rate=rate,
            leads=leads,
            seed=seed,
            metrics_port=metrics_port,
            day_seconds=day_seconds,
            console=Console() if sys.stdout.isatty() else Console(width=150),
        )
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("interrupted; everything is stopped", err=True)
        code = 130
    sys.exit(code)


@main.command()
@kafka_client_options
@click.option(
    "--rate",
    type=float,
    default=100,
    show_default=True,
    help="Events per second; 0 sends as fast as possible.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Stop after this many seconds.",
)
@click.option("--events", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--leads", type=click.IntRange(min=1), default=300, show_default=True, help="Simulated people."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
def simulate(
    rate: float, duration: float | None, events: int | None, leads: int, seed: int, **o: Any
) -> None:
    """Send realistic traffic to the input topics of any Kafka cluster.

    Buyers, researchers, competitors, job seekers, students and bots, with duplicated
    deliveries, late events and a few malformed messages. Runs until --duration, --events
    or Ctrl-C.
    """
    from leadscore.simulate import simulate as run_simulation

    _configure_logging("INFO")
    try:
        kafka = kafka_settings(o)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    topics = {t.record_type: t.name for t in kafka.input_topics}
    stop = threading.Event()
    _stop_on_signals(stop)

    def progress(stats: Any) -> None:
        click.echo(f"sent {stats.sent:,} events", err=True)

    try:
        stats = run_simulation(
            kafka.producer_config(),
            topics,
            rate=rate,
            duration_s=duration,
            limit=events,
            seed=seed,
            leads=leads,
            stop=stop,
            progress=progress,
        )
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"done: {stats}")


@main.command(epilog=INSPECT_JSON_HELP)
@click.argument("lead_id")
@redis_client_options
@option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The worker's model file. Default: the bundled model.",
)
@click.option("--anonymous", is_flag=True, help="LEAD_ID is an anonymous id.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the explanation as one JSON document (fields below), unrounded.",
)
def inspect(
    lead_id: str,
    model: Path | None,
    anonymous: bool,
    as_json: bool,
    **o: Any,
) -> None:
    """Explain a lead's score: fit rules and rule contributions (with decay) that add up
    to the total, grade, stage and time in it, why the lead is in that stage (its
    conditions with the lead's values), tags, speed-to-lead, consent, attributes, and the
    recent changes with their reasons. Exit status 1 if the profile is unknown."""
    import json

    from leadscore.events import ProfileKey
    from leadscore.scoring.explain import explanation, json_document, text_lines
    from leadscore.state.client import redis_client
    from leadscore.state.store import StateStore

    state_namespace = o["state_namespace"]
    try:
        scoring_model = load_model(model)
        client = redis_client(redis_settings(o), timeout_s=5)
        profile = ProfileKey("anon" if anonymous else "lead", lead_id)
        stored = StateStore(client, namespace=state_namespace, ttl_ms=0).read(profile)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if stored.state is None:
        if as_json:
            click.echo(json.dumps({"lead_id": lead_id, "kind": profile.kind, "found": False}))
            sys.exit(1)
        raise click.ClickException(
            f"no state for {profile.kind} {lead_id!r} in namespace {state_namespace!r}"
        )
    account = explanation(profile, stored.state, scoring_model)
    if not as_json:
        click.echo("\n".join(text_lines(account)))
        return
    document = json_document(account)
    document["store"] = _store_document(stored)
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _store_document(stored: Stored) -> dict[str, object]:
    """How the profile is stored: `inspect --json`'s `store` field."""
    return {
        "version": stored.version,
        "watermarks": [
            {"topic": topic, "partition": partition, "offset": offset}
            for (topic, partition), offset in sorted(stored.watermarks.items())
        ],
        "schedule": None
        if stored.schedule is None
        else {"topic": stored.schedule[0], "partition": stored.schedule[1]},
        "pending_outputs": len(stored.pending),
    }


@main.command("check-model")
@click.argument(
    "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also score these events (JSON lines: record fields plus type: click, "
    "visit, form or call) and print what each one did.",
)
def check_model(path: Path | None, events: Path | None) -> None:
    """Validate a scoring model file (default: the bundled model) and summarize its rules,
    caps, grades and stages; with --events, dry-run events through it."""
    try:
        model = load_model(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from leadscore.model.summary import summarize

    click.echo("\n".join(summarize(model)))
    if events is not None:
        _dry_run(events, model)


def _dry_run(events: Path, model: Model) -> None:
    from leadscore.dry_run import dry_run

    click.echo(f"dry run of {events}:")
    try:
        for line in dry_run(events, model):
            click.echo("  " + line)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("leadscore").info(
            "%s: finishing the batch in hand", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
