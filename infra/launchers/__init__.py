"""Start real service processes on loopback ports: for the test harness and the embedded demo.

Each launcher owns one child process, writes its output to a log file, waits for the service to
answer its own protocol (never a fixed sleep) and stops only the PID it started.
"""

from infra.launchers.kafka import KafkaBroker, SaslSslListener
from infra.launchers.moto import MotoS3Server
from infra.launchers.process import ManagedProcess, ServiceStartError, free_port
from infra.launchers.redis import RedisServer
from infra.launchers.secantus import SecantusServer
from infra.launchers.tansu import TansuBroker

__all__ = [
    "KafkaBroker",
    "ManagedProcess",
    "MotoS3Server",
    "RedisServer",
    "SaslSslListener",
    "SecantusServer",
    "ServiceStartError",
    "TansuBroker",
    "free_port",
]
