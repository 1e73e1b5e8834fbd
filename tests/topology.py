"""Several receiver hosts made by a test: network namespaces on a bridge, a
DNS server with the test domain's MX records, and a private Postfix as the
sending MTA (README "Running on several hosts").

Every name carries a tag unique to the test run (namespaces, veths, the
bridge, the 10.x.y.0/24 subnet), so tests run in parallel; `Topology.close`
removes everything, and kills whatever still runs in the namespaces, even
after a failure. Traffic stays between the namespaces and this machine.

PostgreSQL at 127.0.0.1 is not reachable from a namespace: each receiver
reaches it through a forwarder of the test (tests/netfakes.py TCPProxy) on
the bridge's address; its sessions are named after it (HOST_NAME mx0,
mx1, ...: application_name "tempmail mx0", ...) so a test can tell the
hosts apart.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from .helpers import AppProcess, clean_environment, db_address
from .netfakes import TCPProxy

DOMAIN = "mail.test"


def ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 no route of this machine uses."""
    used = [ipaddress.ip_network(n) for n in re.findall(r"^(\S+/\d+)", ip("-4", "route"), re.M)]
    while True:
        net = ipaddress.ip_network(f"10.{random.randrange(64, 250)}.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net


class Receiver(AppProcess):
    """`python -m app serve` on port 25 of its own namespace."""

    def __init__(self, netns: str, env: dict[str, str]) -> None:
        super().__init__(env)
        self.netns = netns

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().argv()]

    def start(self) -> Receiver:
        self.launch()
        return self

    def ready(self) -> Receiver:
        self.wait_for_log(r"\[smtp\] listening on", 90)
        return self


class Topology:
    """A bridge in the root namespace, hosts in namespaces on it."""

    def __init__(self, workdir: Path) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.bridge = f"tm{self.tag}br"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet[1])  # the bridge: this machine, seen from a host
        self.namespaces: list[str] = []
        self.proxies: list[TCPProxy] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.receivers: list[Receiver] = []
        self.mtas: list[Postfix] = []
        ip("link", "add", self.bridge, "type", "bridge")
        try:
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        except RuntimeError:
            self.close()
            raise

    def address(self, index: int) -> str:
        return str(self.subnet[10 + index])

    def host(self, index: int, name: str) -> str:
        """A namespace with one veth on the bridge at address(index); its name."""
        netns = f"tm{self.tag}{name}"
        outside, inside = f"{netns}h", f"{netns}p"
        ip("netns", "add", netns)
        self.namespaces.append(netns)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", netns)
        ip("link", "set", outside, "master", self.bridge, "up")
        ip("addr", "add", f"{self.address(index)}/24", "dev", inside, netns=netns)
        ip("link", "set", inside, "up", netns=netns)
        ip("link", "set", "lo", "up", netns=netns)
        return netns

    def database_url(self, url: str, index: int) -> str:
        """`url` through a forwarder on the bridge, its sessions named mx`index`."""
        proxy = TCPProxy(db_address(url), bind=self.gateway)
        self.proxies.append(proxy)
        user, _, rest = url.partition("://")[2].rpartition("@")
        database = rest.partition("/")[2]
        return (
            f"postgresql://{user}@{self.gateway}:{proxy.port}/{database}?application_name=mx{index}"
        )

    def receiver(self, index: int, netns: str, database_url: str, **settings: str) -> Receiver:
        env = {
            **clean_environment(),
            "DATABASE_URL": self.database_url(database_url, index),
            "SMTP_RECEIVE_PORT": "25",
            "SMTP_BIND": self.address(index),
            "SMTP_HOSTNAME": f"mx{index}.{DOMAIN}",
            "HOST_NAME": f"mx{index}",  # its sessions: application_name "tempmail mx<index>"
            "SPOOL_DIR": str(self.workdir / f"spool{index}"),
            "AUTH_CHECKS": "off",  # no sender domains to look up here
            "RATE_LIMITS": "off",  # one MTA floods by design
            "LOG_LEVEL": "info",
            **{k.upper(): v for k, v in settings.items()},
        }
        receiver = Receiver(netns, env)
        self.receivers.append(receiver)
        return receiver

    def mta(self, index: int, data_done: int = 30) -> Postfix:
        """A host with Postfix in it, resolving through our DNS."""
        netns = self.host(index, "mta")
        self.resolver_of(netns)
        postfix = Postfix(netns, data_done)
        self.mtas.append(postfix)
        return postfix

    def dns(self, mx: list[tuple[int, int]]) -> None:
        """dnsmasq on the bridge's port 53: DOMAIN's MX records, (host index,
        preference) each, and the hosts' A records; nothing else resolves."""
        argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", "--bind-interfaces", f"--listen-address={self.gateway}",
            "--port=53", "--pid-file=", f"--local=/{DOMAIN}/", "--log-queries",
            f"--log-facility={self.workdir / 'dnsmasq.log'}",
        ]  # fmt: skip
        for index, preference in mx:
            host = f"mx{index}.{DOMAIN}"
            argv += [f"--mx-host={DOMAIN},{host},{preference}"]
            argv += [f"--host-record={host},{self.address(index)}"]
        self.processes.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))

    def resolver_of(self, netns: str) -> None:
        """The namespace's /etc/resolv.conf (ip netns exec binds it): our DNS."""
        folder = Path("/etc/netns") / netns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(f"nameserver {self.gateway}\n")

    def close(self) -> None:
        """Kill what runs in the namespaces, remove them, the bridge, the rest."""
        for postfix in self.mtas:
            (self.workdir / f"{postfix.netns}.maillog").write_text(postfix.log)  # to read after
            postfix.close()
        for receiver in self.receivers:
            if receiver.process is not None and receiver.process.poll() is None:
                receiver.kill()
        for process in self.processes:
            process.kill()
            process.wait(30)
        for netns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for proxy in self.proxies:
            proxy.stop()


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.sender.test
mydomain = sender.test
myorigin = sender.test
mydestination =
relayhost =
inet_interfaces = all
inet_protocols = ipv4
smtp_host_lookup = dns
smtp_dns_support_level = enabled
smtp_tls_security_level = none
alias_maps =
alias_database =
notify_classes =
biff = no
maillog_file = {base}/log/maillog
maillog_file_prefixes = {base}/log
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
smtp_data_done_timeout = {data_done}s
default_destination_concurrency_limit = 10
# Each delivery looks up the MX records afresh: a cached session (kept per
# destination) would carry mail to a backup after the primary is well again.
smtp_connection_cache_on_demand = no
"""

MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix in namespace `netns`: its own configuration and queue
    (under a folder the postfix user can enter), no SMTP listener, its log in
    a file. `close` stops it; Topology.close kills what is left."""

    def __init__(self, netns: str, data_done: int = 30) -> None:
        self.netns = netns
        self.base = Path(tempfile.mkdtemp(prefix=f"{netns}-postfix-"))
        self.base.chmod(0o755)  # the postfix user enters its queue below
        for sub in ("queue", "data", "log"):
            (self.base / sub).mkdir()
        shutil.chown(self.base / "data", "postfix")
        shutil.chown(self.base / "log", "postfix")
        (self.base / "main.cf").write_text(MAIN_CF.format(base=self.base, data_done=data_done))
        (self.base / "master.cf").write_text(MASTER_CF)
        self.log_file = self.base / "log" / "maillog"
        self.postfix("start")

    def postfix(self, command: str) -> None:
        argv = ["ip", "netns", "exec", self.netns, "postfix", "-c", str(self.base), command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command}: {done.stdout}{done.stderr}")

    def inject(self, raw: bytes, recipient: str, sender: str = "relay@sender.test") -> None:
        """Hand a message to Postfix as a local program would (postdrop, pickup)."""
        argv = ["sendmail", "-C", str(self.base), "-f", sender, "-i", "--", recipient]
        subprocess.run(argv, input=raw, check=True, capture_output=True, timeout=60)

    @property
    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        try:
            self.postfix("abort")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # Topology.close kills what runs in its namespace
        shutil.rmtree(self.base, ignore_errors=True)
