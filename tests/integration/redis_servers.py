"""Real Redis topologies for integration tests: a cluster, a primary with a replica, TLS.

Every server is the `redis-server` on PATH (Debian's 7.0), listening on free loopback ports,
without persistence, in a directory of its own under one temporary directory; `redis-cli`
creates and reshards the cluster, `openssl` makes the TLS certificates. No Docker, no mocks.

Each topology is a context manager; leaving it (also on an exception, also when startup fails
half-way) stops every server it started and removes the directories:

    with RedisCluster() as cluster:
        client = redis.RedisCluster.from_url(cluster.url)

A server that does not come up raises RedisStartError with the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from leadscore.embedded import stop_process

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


class RedisStartError(RuntimeError):
    """A server, or the topology made of them, did not come up (or a redis-cli step failed)."""


def _tool(name: str) -> str:
    """The path of `name` on PATH, or a RedisStartError saying how to get it."""
    found = shutil.which(name)
    if not found:
        raise RedisStartError(f"`{name}` is not on PATH (Debian: apt-get install {name})")
    return found


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago (bound together, then
    released, so the kernel cannot hand out the same one twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]


class _Server:
    """One redis-server process; its directory holds its log (`redis.log`) and any files.

    `client_options` are what a redis.Redis needs to reach it (a password, TLS files).
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        port: int,
        arguments: Sequence[str],
        client_options: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.directory = directory
        self.port = port
        self.client_options = dict(client_options)
        self.log = directory / "redis.log"
        directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as output:
            # a session of its own: Ctrl-C in the terminal reaches pytest, which stops it
            self.process = subprocess.Popen(
                [_tool("redis-server"), *arguments],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,
            )
        self._client: redis.Redis | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        """A client of this server (decoded replies), made once and reused."""
        if self._client is None:
            self._client = redis.Redis(
                host=HOST,
                port=self.port,
                decode_responses=True,
                retry=Retry(NoBackoff(), 0),  # a failed check fails now; the caller polls
                socket_timeout=5,
                socket_connect_timeout=2,
                **self.client_options,
            )
        return self._client

    def execute(self, *command: str) -> Any:
        """Run a command on this server (CLUSTER subcommands given apart come back raw)."""
        return self.client().execute_command(*command)  # type: ignore[no-untyped-call]

    def info(self, section: str) -> dict[str, Any]:
        """`INFO section` as redis-py parses it (numbers as int)."""
        return dict(self.client().info(section))

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_bytes()[-chars:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, clients see the connection drop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 5 s); nothing is saved (persistence is off)."""
        if self._client is not None:
            self._client.close()
        stop_process(self.process)


def _fields(text: str) -> dict[str, str]:
    """`key:value` lines (CLUSTER INFO) as a dict; comments and blanks skipped."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def _wait(check: Callable[[], bool], what: str, servers: Iterable[_Server]) -> None:
    """Poll `check` until true; a server exiting or START_TIMEOUT_S passing raises
    RedisStartError naming `what`, with the end of the log of the servers concerned."""
    servers = list(servers)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        exited = [s for s in servers if s.process.poll() is not None]
        if exited:
            raise RedisStartError(
                f"gave up waiting for {what}: "
                + "; ".join(
                    f"{s.name} exited ({s.process.returncode}):\n{s.log_tail()}" for s in exited
                )
            )
        with contextlib.suppress(OSError, redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name} ({s.log}):\n{s.log_tail()}" for s in servers)
            raise RedisStartError(
                f"gave up waiting for {what} after {START_TIMEOUT_S:.0f} s\n{logs}"
            )
        time.sleep(0.05)


def _answers(server: _Server) -> bool:
    """The server replied to PING; an authentication or permission error is a reply too
    (an ACL may have turned the default user off)."""
    try:
        return bool(server.execute("PING"))
    except (redis.AuthenticationError, redis.ResponseError):
        return True


def _base_arguments(port: int, directory: Path, password: str | None) -> list[str]:
    """Loopback only, nothing written to disk but what a server must write (in `directory`)."""
    arguments = [
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--protected-mode",
        "no",
    ]
    if password is not None:
        arguments += ["--requirepass", password, "--masterauth", password]
    return arguments


def _url(scheme: str, port: int, username: str | None, password: str | None) -> str:
    credentials = ""
    if username is not None or password is not None:
        credentials = quote(username or "", safe="") + ":" + quote(password or "", safe="") + "@"
    return f"{scheme}://{credentials}{HOST}:{port}/0"


class _Topology:
    """Base of the topologies: `start()` (or `with`) brings the servers up, `close()` stops
    them and removes their directories. A failed start cleans up before it raises."""

    directory_prefix = "leadscore-redis-"

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._servers: list[_Server] = []
        self.directory = Path()

    def start(self) -> Self:
        try:
            self.directory = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix=self.directory_prefix))
            )
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL) and remove the directory."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        raise NotImplementedError

    def _server(
        self,
        name: str,
        port: int,
        arguments: Sequence[str],
        client_options: Mapping[str, Any] | None = None,
    ) -> _Server:
        """Start a server in the subdirectory `name`; it is stopped by close()."""
        server = _Server(name, self.directory / name, port, arguments, client_options or {})
        self._stack.callback(server.stop)
        self._servers.append(server)
        return server


class RedisCluster(_Topology):
    """Three masters, no replicas, all 16384 slots assigned by `redis-cli --cluster create`.

    `url` reaches the first node (redis.RedisCluster.from_url discovers the others);
    `reshard()` moves slots between masters with `redis-cli --cluster reshard`.
    With `password`, every node has it as requirepass and masterauth.
    """

    directory_prefix = "leadscore-redis-cluster-"

    def __init__(self, masters: int = 3, password: str | None = None) -> None:
        super().__init__()
        self.masters = masters
        self.password = password

    def _start(self) -> None:
        _tool("redis-cli")
        ports = _free_ports(2 * self.masters)
        for port, bus_port in zip(ports[::2], ports[1::2], strict=True):
            directory = self.directory / f"node-{port}"
            # the bus port is given: the default (port + 10000) may be taken or above 65535
            arguments = [
                *_base_arguments(port, directory, self.password),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                "nodes.conf",
            ]
            options = {"password": self.password} if self.password is not None else {}
            self._server(f"node-{port}", port, arguments, options)
        _wait(lambda: all(map(_answers, self._servers)), "every node to answer PING", self._servers)
        self._cli("--cluster", "create", *self.nodes, "--cluster-replicas", "0")
        self._wait_settled("the cluster to be created")

    @property
    def nodes(self) -> list[str]:
        """`host:port` of each master, in start order."""
        return [s.address for s in self._servers]

    @property
    def url(self) -> str:
        """redis://[:password@]127.0.0.1:P1/0, the first node."""
        return _url("redis", self._servers[0].port, None, self.password)

    def node_ids(self) -> dict[str, str]:
        """`host:port` -> cluster node id."""
        return {s.address: s.execute("CLUSTER", "MYID") for s in self._servers}

    def slot_counts(self) -> dict[str, int]:
        """`host:port` -> number of slots it serves, as the first node sees it."""
        ids = {node_id: address for address, node_id in self.node_ids().items()}
        owners = _slot_owners(self._servers[0].execute("CLUSTER", "NODES"))
        return {ids[node_id]: sum(e - s + 1 for s, e in ranges) for node_id, ranges in owners}

    def reshard(self, slots: int, source: str, target: str) -> None:
        """Move `slots` slots (and their keys) from master `source` to master `target`
        (each `host:port` as in `nodes`, or a node id); returns once every node agrees on
        the new owners and no slot is still migrating."""
        ids = self.node_ids()
        source, target = ids.get(source, source), ids.get(target, target)
        self._cli(
            "--cluster",
            "reshard",
            self.nodes[0],
            "--cluster-from",
            source,
            "--cluster-to",
            target,
            "--cluster-slots",
            str(slots),
        )
        self._wait_settled(f"every node to agree after moving {slots} slots")

    def _settled(self) -> bool:
        """Every node: cluster_state ok, no slot migrating or importing, same slot owners."""
        views = set()
        for server in self._servers:
            if _fields(server.execute("CLUSTER", "INFO")).get("cluster_state") != "ok":
                return False
            nodes = server.execute("CLUSTER", "NODES")
            if "[" in nodes:  # [slot->-id] or [slot-<-id]: a migration in progress
                return False
            views.add(_slot_owners(nodes))
        return len(views) == 1

    def _wait_settled(self, what: str) -> None:
        _wait(self._settled, what, self._servers)

    def _cli(self, *arguments: str) -> None:
        """redis-cli with `arguments` and --cluster-yes; RedisStartError if it fails."""
        environment = dict(os.environ)
        if self.password is not None:
            environment["REDISCLI_AUTH"] = self.password  # not -a: kept off the command line
        command = [_tool("redis-cli"), *arguments, "--cluster-yes"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise RedisStartError(
                f"{' '.join(command)} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )


def _slot_owners(cluster_nodes: str) -> frozenset[tuple[str, tuple[tuple[int, int], ...]]]:
    """(node id, its slot ranges) of each master in a CLUSTER NODES reply."""
    owners = set()
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) < 8 or "master" not in fields[2].split(","):
            continue
        ranges = []
        for entry in fields[8:]:
            if entry.startswith("["):  # migrating/importing, not owned
                continue
            start, _, end = entry.partition("-")
            ranges.append((int(start), int(end or start)))
        owners.add((fields[0], tuple(sorted(ranges))))
    return frozenset(owners)


class ReplicatedRedis(_Topology):
    """A primary and one replica (`--replicaof`), both without persistence.

    Up once the replica reports master_link_status:up and the primary counts it, so
    `WAIT 1 <ms>` works straight away. `kill_primary()` crashes the primary (SIGKILL);
    `promote_replica()` makes the replica a writable master (REPLICAOF NO ONE).
    """

    directory_prefix = "leadscore-redis-replicated-"

    def __init__(self, password: str | None = None) -> None:
        super().__init__()
        self.password = password

    def _start(self) -> None:
        primary_port, replica_port = _free_ports(2)
        options = {"password": self.password} if self.password is not None else {}
        self.primary = self._server(
            "primary",
            primary_port,
            [
                *_base_arguments(primary_port, self.directory / "primary", self.password),
                # the replica's full sync starts at once, not after the default 5 s delay
                "--repl-diskless-sync-delay",
                "0",
            ],
            options,
        )
        self.replica = self._server(
            "replica",
            replica_port,
            [
                *_base_arguments(replica_port, self.directory / "replica", self.password),
                "--replicaof",
                HOST,
                str(primary_port),
            ],
            options,
        )
        _wait(
            lambda: (
                self.replica.info("replication").get("master_link_status") == "up"
                and self.primary.info("replication").get("connected_slaves") == 1
            ),
            "the replica to sync with the primary",
            self._servers,
        )

    @property
    def primary_url(self) -> str:
        return _url("redis", self.primary.port, None, self.password)

    @property
    def replica_url(self) -> str:
        return _url("redis", self.replica.port, None, self.password)

    def kill_primary(self) -> None:
        """SIGKILL the primary; returns once it is gone (the replica keeps retrying it)."""
        self.primary.kill()

    def add_replica(self) -> _Server:
        """Start one more replica, of the replica (the primary once promoted), as a managed
        Redis adds one after a failover; returns once it is in sync."""
        (port,) = _free_ports(1)
        options = {"password": self.password} if self.password is not None else {}
        name = f"replica-{len(self._servers)}"
        added = self._server(
            name,
            port,
            [
                *_base_arguments(port, self.directory / name, self.password),
                "--replicaof",
                HOST,
                str(self.replica.port),
            ],
            options,
        )
        _wait(
            lambda: added.info("replication").get("master_link_status") == "up",
            "the added replica to sync",
            [added, self.replica],
        )
        return added

    def promote_replica(self) -> None:
        """REPLICAOF NO ONE on the replica; returns once it reports role:master."""
        self.replica.execute("REPLICAOF", "NO", "ONE")
        _wait(
            lambda: self.replica.info("replication").get("role") == "master",
            "the replica to become a master",
            [self.replica],
        )


@dataclass(frozen=True)
class TlsCertificates:
    """PEM files: a throw-away CA, a server certificate for 127.0.0.1/localhost and a
    client certificate, both signed by the CA; keys unencrypted."""

    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path


def _openssl(*arguments: str | Path) -> None:
    command = [_tool("openssl"), *map(str, arguments)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RedisStartError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def make_certificates(directory: Path) -> TlsCertificates:
    """A CA and a server and a client certificate signed by it, in `directory` (which must
    exist), made with the `openssl` command line; EC P-256 keys, valid for 2 days.

    Another call (another directory) makes an unrelated CA: a client trusting it must fail.
    """
    d = directory
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    ca_subject = "/CN=leadscore test CA"
    _openssl(
        "req", "-x509", *new_key, "-days", "2", "-subj", ca_subject, "-keyout", ca_key, "-out", ca
    )
    signed_by_ca = ("-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2")
    for name, subject, extensions in (
        ("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "/CN=leadscore-test-client", "extendedKeyUsage=clientAuth"),
    ):
        key, request, certificate = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
        extfile = d / f"{name}.ext"
        extfile.write_text(extensions + "\n")
        _openssl("req", *new_key, "-subj", subject, "-keyout", key, "-out", request)
        _openssl(
            "x509", "-req", "-in", request, *signed_by_ca, "-extfile", extfile, "-out", certificate
        )
    return TlsCertificates(
        ca=ca,
        server_certificate=d / "server.pem",
        server_key=d / "server.key",
        client_certificate=d / "client.pem",
        client_key=d / "client.key",
    )


class TlsRedis(_Topology):
    """A redis-server reachable only over TLS (`--port 0 --tls-port P`), with ACL users.

    `auth_clients` is its --tls-auth-clients: "yes" requires a client certificate signed by
    the CA, "optional" (the default) checks one only if sent. `acl_lines` go to its aclfile
    (e.g. "user leadscore on >secret ~ls:* +get +set"); the default user stays as Redis
    makes it (no password, every command) unless a line redefines it. `certificates`
    defaults to a fresh set made by make_certificates().
    """

    directory_prefix = "leadscore-redis-tls-"

    def __init__(
        self,
        acl_lines: Sequence[str] = (),
        auth_clients: Literal["yes", "optional", "no"] = "optional",
        certificates: TlsCertificates | None = None,
    ) -> None:
        super().__init__()
        self.acl_lines = list(acl_lines)
        self.auth_clients = auth_clients
        self._certificates = certificates

    def _start(self) -> None:
        if self._certificates is None:
            (self.directory / "certificates").mkdir()
            self._certificates = make_certificates(self.directory / "certificates")
        c = self._certificates
        (port,) = _free_ports(1)
        directory = self.directory / "server"
        directory.mkdir()
        aclfile = directory / "users.acl"
        aclfile.write_text("".join(f"{line}\n" for line in self.acl_lines))
        arguments = [
            *_base_arguments(0, directory, None),
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(c.server_certificate),
            "--tls-key-file",
            str(c.server_key),
            "--tls-ca-cert-file",
            str(c.ca),
            "--tls-auth-clients",
            self.auth_clients,
            "--aclfile",
            str(aclfile),
        ]
        self.server = self._server("server", port, arguments, {"ssl": True, **self.ssl_options()})
        _wait(lambda: _answers(self.server), "the TLS server to answer PING", [self.server])

    @property
    def certificates(self) -> TlsCertificates:
        assert self._certificates is not None, "start the server first"
        return self._certificates

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """rediss://[username:password@]127.0.0.1:P/0 (credentials percent-encoded)."""
        return _url("rediss", self.port, username, password)

    def ssl_options(self, client_certificate: bool = True) -> dict[str, str]:
        """redis-py keyword arguments trusting the CA and, by default, presenting the client
        certificate: `redis.Redis.from_url(tls.url(), **tls.ssl_options())`."""
        c = self.certificates
        options = {"ssl_ca_certs": str(c.ca)}
        if client_certificate:
            options |= {"ssl_certfile": str(c.client_certificate), "ssl_keyfile": str(c.client_key)}
        return options
